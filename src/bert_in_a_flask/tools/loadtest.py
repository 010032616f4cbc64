"""A real gunicorn server on loopback and bounded request loops against it: shared by the tests,
`make bench` and `make soak`.

    python -m bert_in_a_flask.tools.loadtest --model models/trained_model --clients 16 --requests 2000   (make soak)
"""
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.error import URLError

from . import APP_ENTRY_POINT, REPO_ROOT as ROOT
from .http_client import free_port, http, poll_ready, predict  # noqa: F401 (the tools' and tests' names)


def wait_for(condition, timeout, interval=0.1):
    """True as soon as `condition()` is, False after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def serving_python():
    """The interpreter the tools' servers run on: the serving environment's (SERVING_PYTHON, which
    `make bench`, `make soak` and `make chaos` set to the API venv's python, as start_api serves),
    else this one."""
    return os.environ.get("SERVING_PYTHON") or sys.executable


class Server(object):
    """gunicorn with gunicorn.conf.py, as `make start_api` runs it, on a free loopback port."""

    def __init__(self, model_dir, log_path, python=None, **env):
        """`python`: the interpreter whose gunicorn serves (default this one's; the serving venv's in tests)."""
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = log_path
        environ = dict(os.environ, MODEL_DIR=model_dir, HOST="127.0.0.1", PORT=str(self.port))
        environ.setdefault("MALLOC_ARENA_MAX", "2")  # as `make start_api` and the API image set it
        environ.update(env)
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [python or sys.executable, "-m", "gunicorn", "-c", os.path.join(ROOT, "gunicorn.conf.py"), APP_ENTRY_POINT],
            cwd=ROOT, env=environ, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=180):
        return poll_ready(self.url, timeout, gave_up=lambda: self.process.poll() is not None)

    def worker_pids(self):
        pids = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open("/proc/%s/stat" % pid) as handle:
                        state, parent = handle.read().rsplit(")", 1)[1].split()[:2]
                    if int(parent) == self.process.pid and state != "Z":  # a killed worker not yet reaped is gone
                        pids.append(int(pid))
                except (OSError, ValueError, IndexError):
                    continue
        return sorted(pids)

    def worker_rss_mib(self):
        """{pid: (current, peak)} resident memory of each worker, in MiB."""
        sizes = {}
        for pid in self.worker_pids():
            try:
                with open("/proc/%d/status" % pid) as handle:
                    fields = dict(line.split(":", 1) for line in handle if ":" in line)
                sizes[pid] = (int(fields["VmRSS"].split()[0]) / 1024.0, int(fields["VmHWM"].split()[0]) / 1024.0)
            except (OSError, KeyError, ValueError):
                continue
        return sizes

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
        with open(self.log_path, errors="replace") as handle:
            return handle.read()


def run_clients(url, texts_for, clients, requests_per_client, timeout=60):
    """Each client sends its requests in turn; returns (latencies in s, failures, wall seconds)."""
    latencies, failures, lock = [], [], threading.Lock()

    def client(c):
        for i in range(requests_per_client):
            started = time.perf_counter()
            try:
                status, _ = predict(url, texts_for(c * requests_per_client + i), timeout)
            except (URLError, OSError) as exc:
                status = repr(exc)
            with lock:
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures.append(status)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return latencies, failures, time.perf_counter() - started


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100.0 * (len(values) - 1))))] if values else float("nan")


def soak(model_dir, clients, requests, log_dir, texts):
    """`make soak`: clients x requests on one worker; zero failures and flat memory expected."""
    server = Server(model_dir, os.path.join(log_dir, "soak-server.log"), python=serving_python(), WORKERS="1",
                    ACCESS_LOG="/dev/null")
    try:
        if not server.wait_ready():
            raise SystemExit("error: server not ready; see %s" % server.log_path)
        run_clients(server.url, lambda i: [texts[i % len(texts)]], clients, 10)  # warm-up, same pattern
        before = sum(rss for rss, _ in server.worker_rss_mib().values())
        latencies, failures, wall = run_clients(server.url, lambda i: [texts[i % len(texts)]], clients,
                                                max(1, requests // clients))
        after = sum(rss for rss, _ in server.worker_rss_mib().values())
    finally:
        server.stop()
    return {"requests": len(latencies) + len(failures), "failed": len(failures), "rps": len(latencies) / wall,
            "p50_ms": 1000 * percentile(latencies, 50), "p99_ms": 1000 * percentile(latencies, 99),
            "rss_before_mib": before, "rss_after_mib": after, "rss_growth_pct": 100.0 * (after - before) / before}


def main(argv=None):
    from ..shared.cli import ArgumentParser, positive_int
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models/trained_model", help="an export, or a folder of them (newest)")
    parser.add_argument("--clients", type=positive_int, default=16, help="concurrent clients")
    parser.add_argument("--requests", type=positive_int, default=2000, help="in all, spread over the clients")
    parser.add_argument("--log-dir", default="models/logs", help="where the server's log goes")
    args = parser.parse_args(argv)
    os.makedirs(args.log_dir, exist_ok=True)
    texts = ["Why does my code keep throwing me null pointer exception?",
             "I wrote a loop that i cannot exit, what am I doing wrong?", "How to center a div", "git rebase vs merge"]
    result = soak(args.model, args.clients, args.requests, args.log_dir, texts)
    print("soak: %(requests)d requests, %(failed)d failed, %(rps).1f req/s, p50 %(p50_ms).1f ms, "
          "p99 %(p99_ms).1f ms, worker RSS %(rss_before_mib).0f -> %(rss_after_mib).0f MiB "
          "(%(rss_growth_pct)+.1f%%)" % result)
    return 0 if result["failed"] == 0 and result["rss_growth_pct"] < 10 else 1


if __name__ == "__main__":
    sys.exit(main())
