"""Result documents and what reads them: schemas, histograms, summaries, reports, claims.

Rule: nothing here imports loadgen.run.native or loads the native library, directly
or through another module (tests/test_boundaries.py checks it). A document is read,
judged, compared and drawn on a host without a built library; result builds one
from a run's Measurement, which it receives and never imports at run time.
"""
