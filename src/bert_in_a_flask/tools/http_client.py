"""The few HTTP calls the tools make to a server on loopback (stdlib only): a free port, one request,
a /predict call, waiting for /ready. start_api, cluster, loadtest, bench and chaos share them."""
import json
import socket
import time
from http.client import HTTPException
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(url, body=None, timeout=60):
    """(status, bytes) of one request; a JSON POST when `body` is given."""
    request = Request(url, data=body, headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except HTTPError as error:
        return error.code, error.read()


def predict(url, texts, timeout=60):
    return http(url + "/predict", json.dumps({"X": texts}).encode(), timeout)


def poll_ready(url, timeout, gave_up=lambda: False, interval=0.2):
    """True once `url`/ready answers 200; False after `timeout` s or as soon as `gave_up()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not gave_up():
        try:
            if http(url + "/ready", timeout=2)[0] == 200:
                return True
        except (URLError, OSError, HTTPException):  # not listening yet, or gone mid-answer
            pass
        time.sleep(interval)
    return False
