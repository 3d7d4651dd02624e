"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """A problem with what the user gave us (a path, a flag, a file); the message says what to do.

    The CLI prints the message without a traceback and exits with status 2.
    """
