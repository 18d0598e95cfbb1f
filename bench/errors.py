"""The one error type users see: a single sentence, exit code 2."""


class SSLBenchError(Exception):
    """A user-facing error. Its message is one sentence naming the bad input."""

    exit_code = 2


def choices(valid) -> str:
    """Format valid choices for an error message."""
    return ", ".join(sorted(str(v) for v in valid))
