"""Errors that reach the user as a message, not a traceback."""


class UserError(Exception):
    """A mistake in what the user asked for (a missing file, an unknown id, a bad flag
    combination). `main` prints the message on one line and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
