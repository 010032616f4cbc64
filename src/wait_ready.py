"""Wait until the API at URL answers /ready with 200; print the server's error and exit 1 if it dies.

    python src/wait_ready.py http://127.0.0.1:5000 models/logs/gunicorn-5000.log [timeout_s]
"""
import sys
import time
from urllib.error import URLError
from urllib.request import urlopen


def server_error(log_file):
    try:
        with open(log_file, errors="replace") as handle:
            lines = [line.strip() for line in handle if line.startswith("error: ")]
        return lines[-1] if lines else None
    except OSError:
        return None


def wait_ready(url, log_file, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if urlopen(url + "/ready", timeout=2).status == 200:
                return 0
        except (URLError, OSError):
            pass
        error = server_error(log_file)
        if error:
            print(error, file=sys.stderr)
            return 1
        time.sleep(0.5)
    print("error: the API at %s was not ready after %ds; see %s" % (url, timeout, log_file), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(wait_ready(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 180))
