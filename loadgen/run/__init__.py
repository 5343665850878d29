"""Running workers and measuring them: the native seam, the controller, snapshots and intervals.

native is the only module that loads the native library; stats, intervals and the
live outputs (progress, metrics, jsonstream) read what it hands back.
"""
