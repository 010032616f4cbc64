"""`make start_api`: start gunicorn in the background and wait until the API is ready.

    python -m bert_in_a_flask.tools.start_api --port 5000 [--model-dir models/demo/trained_model] [--log-dir models/logs]

Refuses at once (one `error:` line, exit 1) when the port is taken, naming the process there;
appends to the port's log (never truncates a running server's log); stops waiting as soon as the
server exits and prints the server's own last error line. Without --model-dir it serves the
newest export under models/ (models/trained_model/<ts>, models/<run>/trained_model/<ts>).
"""
import glob
import os
import signal
import socket
import subprocess
import sys
import time

from ..shared.cli import ArgumentParser, positive_int
from ..shared.errors import UserError, run_cli
from . import APP_ENTRY_POINT, REPO_ROOT as ROOT
from .loadtest import poll_ready
EXPORT_PATTERNS = ("models/trained_model/[0-9]*/saved_model.pb", "models/*/trained_model/[0-9]*/saved_model.pb")


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=positive_int, required=True, help="port to serve on")
    parser.add_argument("--host", default=os.environ.get("HOST") or "0.0.0.0", help="address to bind (env HOST)")
    parser.add_argument("--model-dir", default="", help="an export, or a folder of them (default: newest under models/)")
    parser.add_argument("--log-dir", default="models/logs", help="api-<port>.log and gunicorn-<port>.pid go here")
    parser.add_argument("--timeout", type=positive_int, default=180, help="seconds to wait for /ready")
    return parser.parse_args(argv)


# --- who holds a port --------------------------------------------------------------------

def port_is_free(host, port):
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def listening_inodes(port):
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle)
                for line in handle:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                        inodes.add(fields[9])
        except OSError:
            continue
    return inodes


def process_on_port(port):
    """(pid, command line) of a process listening on `port`, or None when /proc does not say."""
    sockets = {"socket:[%s]" % inode for inode in listening_inodes(port)}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir("/proc/%s/fd" % pid)
            if any(os.readlink("/proc/%s/fd/%s" % (pid, fd)) in sockets for fd in fds):
                with open("/proc/%s/cmdline" % pid, "rb") as handle:
                    return int(pid), handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
    return None


def pid_alive(pidfile):
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def check_port(host, port, pidfile):
    if port_is_free(host, port):
        return
    ours = pid_alive(pidfile)
    if ours:
        raise UserError("port %d is in use by the API started earlier (gunicorn pid %d); stop it first with "
                        "`make stop_api api_port=%d`" % (port, ours, port))
    holder = process_on_port(port)
    if holder:
        raise UserError("port %d is in use by pid %d (%s); pick another with api_port=" % (port, holder[0], holder[1]))
    raise UserError("port %d is in use by another program; pick another with api_port=" % port)


# --- which model ----------------------------------------------------------------------------

def newest_export(root=ROOT):
    found = [os.path.dirname(path) for pattern in EXPORT_PATTERNS for path in glob.glob(os.path.join(root, pattern))]
    if not found:
        raise UserError("no exported model under models/ (train one with `make train`, or name one with "
                        "`make start_api model_dir=path/to/trained_model`)")
    return os.path.relpath(max(found, key=lambda path: int(os.path.basename(path))), root)


# --- start and wait -----------------------------------------------------------------------

def last_error_line(log_path, offset):
    """The server's own last error line in what it wrote since `offset`."""
    try:
        with open(log_path, "rb") as handle:
            handle.seek(offset)
            lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    for marker in ("error: ", "[ERROR]", "Error"):
        hits = [line for line in lines if marker in line]
        if hits:
            return hits[-1]
    return lines[-1] if lines else None


def start(args):
    os.makedirs(args.log_dir, exist_ok=True)
    log_path = os.path.join(args.log_dir, "api-%d.log" % args.port)
    pidfile = os.path.join(args.log_dir, "gunicorn-%d.pid" % args.port)
    check_port(args.host, args.port, pidfile)
    model_dir = args.model_dir or newest_export()
    print("starting gunicorn on port %d (model: %s; log: %s)" % (args.port, model_dir, log_path))
    env = dict(os.environ, PORT=str(args.port), HOST=args.host, MODEL_DIR=model_dir)
    env.setdefault("MALLOC_ARENA_MAX", "2")  # fewer glibc arenas: a threaded worker's memory stays flat
    with open(log_path, "ab") as log:  # append: never truncate what a running server writes
        offset = log.tell()
        log.write(("=== %s start_api port %d model %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), args.port,
                                                             model_dir)).encode())
        log.flush()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", os.path.join(ROOT, "gunicorn.conf.py"), "--pid", pidfile,
             APP_ENTRY_POINT], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)  # survives the shell that started it
    url = "http://127.0.0.1:%d" % args.port if args.host in ("0.0.0.0", "::", "") else \
        "http://%s:%d" % (args.host if ":" not in args.host else "[%s]" % args.host, args.port)
    if poll_ready(url, args.timeout, gave_up=lambda: server.poll() is not None, interval=0.3):
        print("API ready on http://localhost:%d/predict  (stop: make stop_api api_port=%d)" % (args.port, args.port))
        return
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        raise UserError("the API on port %d was not ready after %d s, so it was stopped; see %s"
                        % (args.port, args.timeout, log_path))
    line = last_error_line(log_path, offset)
    raise UserError("the API on port %d exited (code %s): %s  [log: %s]"
                    % (args.port, server.returncode, line.replace("error: ", "", 1) if line else "no output", log_path))


def main(argv=None):
    return run_cli(start, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
