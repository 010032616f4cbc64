"""Wait until the API at URL answers /ready with 200; print the server's error and exit 1 if it dies.

    python src/wait_ready.py http://127.0.0.1:5000 models/logs/api-5000.log [timeout_s]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from loadtest import poll_ready  # noqa: E402


def server_error(log_file):
    """The server's last `error: ...` line (a model that cannot load), if any."""
    try:
        with open(log_file, errors="replace") as handle:
            lines = [line.strip() for line in handle if line.startswith("error: ")]
        return lines[-1] if lines else None
    except OSError:
        return None


def wait_ready(url, log_file, timeout):
    if poll_ready(url, timeout, gave_up=lambda: server_error(log_file) is not None, interval=0.5):
        return 0
    print(server_error(log_file) or "error: the API at %s was not ready after %ds; see %s" % (url, timeout, log_file),
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(wait_ready(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 180))
