"""The exception tree. Only the CLI turns these into messages and exit codes.

UsageError     the user asked for something invalid (exit 2)
SetupError     the machine or environment cannot do what was asked (exit 1)
"""


class LoadgenError(Exception):
    """Base of every error loadgen raises on purpose."""

    exit_code = 1


class UsageError(LoadgenError):
    exit_code = 2


class SetupError(LoadgenError):
    exit_code = 1
