"""Facts about the host a run measures with: its system (sysinfo) and its kernel counters (counters)."""
