"""loadgen: open-loop packet and IOPS load generator with HDR latency."""

__version__ = "0.1.0"
