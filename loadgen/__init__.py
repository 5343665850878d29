"""loadgen: open-loop packet and IOPS load generator with HDR latency."""

__version__ = "0.1.0"

import os as _os

# numpy is used for arithmetic on counts arrays only; an OpenBLAS thread pool
# would spin on the cores the workers are pinned to.
_os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
