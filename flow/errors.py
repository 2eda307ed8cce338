"""Exceptions the CLI turns into one-line ``error: ...`` messages."""


class FlowError(Exception):
    """Bad user input or an unmet precondition; the message names the culprit and what is allowed."""


class VerificationError(FlowError):
    """C-simulation disagrees with QKeras; the report has already been written."""
