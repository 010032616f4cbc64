"""The one exception type for mistakes a user can fix (bad file, column, flag, request)."""
import sys


class UserError(Exception):
    """Raised with a one-line message naming the file, column or field at fault.

    Turned into `error: <message>` and exit code 2 by `run_cli` (the CLIs), and into a JSON
    body `{"error": message}` with `http_status` by the app's one error handler.
    """

    exit_code = 2

    def __init__(self, message, http_status=400):
        super(UserError, self).__init__(message)
        self.message, self.http_status = message, http_status


def run_cli(action, *args):
    """Run a command line's work; a UserError becomes `error: ...` on stderr and its exit code.

    The one place where the CLIs turn user mistakes into exit codes (no traceback). A package
    missing from the Python that runs us is a user mistake too (the wrong interpreter).
    """
    try:
        action(*args)
    except UserError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        from .cli import missing_package_hint
        print(missing_package_hint(exc, sys.argv[0]), file=sys.stderr)
        return UserError.exit_code
    return 0


class ServiceUnavailable(Exception):
    """The server cannot answer now (model still loading, micro-batcher stopped or too slow):
    the app answers 503 with Retry-After, and /ready says why."""


class Overloaded(UserError):
    """Too much work queued in this worker: a 429 with Retry-After, answered at once (backpressure)."""

    def __init__(self, message, retry_after_s=1):
        super(Overloaded, self).__init__(message, 429)
        self.headers = {"Retry-After": str(retry_after_s)}


class ClientGone(Exception):
    """The caller closed its connection while its request waited in the queue: the request's pass is
    never computed, and the app answers 499 (nginx's "client closed request") for the logs alone."""
