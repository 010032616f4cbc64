"""The one exception type for mistakes a user can fix (bad file, column, flag, request)."""


class UserError(Exception):
    """Raised with a one-line message naming the file, column or field at fault.

    The CLIs turn it into `error: <message>` and exit code 2; the app into a 4xx JSON body.
    """

    exit_code = 2
