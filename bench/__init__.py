"""The Python side of bench.sh: parsing tools' outputs, rendering tables, sampling CPU.

bench.sh stays the entry point and runs the tools; what it needs from Python lives here,
where it can be linted and tested. Nothing in loadgen imports this package: loadgen's own
results are read here strictly, as a consumer of its documented result schema.
"""
