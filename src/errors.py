"""The one exception type for mistakes a user can fix (bad file, column, flag, request)."""


class UserError(Exception):
    """Raised with a one-line message naming the file, column or field at fault.

    The CLIs turn it into `error: <message>` and exit code 2; the app into a 4xx JSON body.
    """

    exit_code = 2


def run_cli(action, *args):
    """Run a command line's work; a UserError becomes `error: ...` on stderr and its exit code.

    The one place where the CLIs turn user mistakes into exit codes (no traceback).
    """
    import sys
    try:
        action(*args)
    except UserError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return exc.exit_code
    return 0
