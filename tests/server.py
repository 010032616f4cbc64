"""Run the real service (gunicorn, as `make start_api` does) on a free loopback port."""
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from conftest import ROOT


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(url, body=None, timeout=30):
    """(status, bytes) of one request; JSON body when given."""
    request = Request(url, data=body, headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except HTTPError as error:
        return error.code, error.read()


class Server(object):

    def __init__(self, model_dir, log_dir, **env):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(str(log_dir), "gunicorn-%d.log" % self.port)
        environ = dict(os.environ, MODEL_DIR=model_dir, HOST="127.0.0.1", PORT=str(self.port), **env)
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", os.path.join(ROOT, "gunicorn.conf.py"),
             "--pythonpath", os.path.join(ROOT, "src"), "app:serve()"],
            cwd=ROOT, env=environ, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if http(self.url + "/ready", timeout=2)[0] == 200:
                    return True
            except (URLError, OSError):
                pass
            time.sleep(0.3)
        return False

    def stop(self, timeout=60):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._log.close()
        return code

    def log(self):
        with open(self.log_path) as handle:
            return handle.read()
