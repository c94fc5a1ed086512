"""The one exception type for mistakes a user can fix (bad path, bad option, bad file)."""


class UserError(Exception):
    """A problem with the user's input or configuration.

    Command-line entry points print its message (no traceback) and exit with status 2.
    The message should name the file, line or option at fault and say how to fix it.
    """
