"""`meterbook demo`: a seeded, realistic workspace for an AI product, closed end to end."""


class DemoError(RuntimeError):
    """The demo cannot start here (a folder it must not delete); one line, exit code 1."""
