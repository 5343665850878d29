# Signals are handled from the first line: importing the CLI takes a while, and a
# SIGTERM meanwhile would otherwise kill the process with no word (exit 143).
from loadgen.run import interrupts

interrupts.install()

from loadgen.cli import main  # noqa: E402

main()
