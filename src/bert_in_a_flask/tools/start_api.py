"""`make start_api`: start gunicorn in the background (or the API image's container) and wait until
the API is ready.

    python -m bert_in_a_flask.tools.start_api --port 5000 [--host 127.0.0.1] [--model-dir models/demo/trained_model]
                                              [--log-dir models/logs] [--docker-image bert-in-a-flask-api]

Refuses at once (one `error:` line, exit 1) when the port is taken, naming the process there;
appends to the port's log (never truncates a running server's log); stops waiting as soon as the
server exits and prints the server's own last error line. Without --model-dir it serves the
newest export under models/ (models/trained_model/<ts>, models/<run>/trained_model/<ts>).

With --docker-image it runs that image as container bert-api-<port>, published on --host:--port,
with --model-dir (if given) mounted read-only and served instead of the export baked in; it waits
for /ready the same way, and a container that exits is reported with its own last error line and
removed. `stop_container` stops and removes it (make stop_api docker=1).
"""
import os
import signal
import socket
import subprocess
import sys
import time

from ..shared.cli import ArgumentParser, positive_int
from ..shared import export_contract
from ..shared.errors import UserError, run_cli
from . import APP_ENTRY_POINT, REPO_ROOT as ROOT
from .http_client import poll_ready


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=positive_int, required=True, help="port to serve on")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind, or to publish the container on")
    parser.add_argument("--model-dir", default="",
                        help="an export, or a folder of them (default: newest under models/)")
    parser.add_argument("--log-dir", default="models/logs", help="api-<port>.log and gunicorn-<port>.pid go here")
    parser.add_argument("--timeout", type=positive_int, default=180, help="seconds to wait for /ready")
    parser.add_argument("--docker-image", default="", help="run this API image in a container instead")
    parser.add_argument("--stop", action="store_true", help="stop the container started with --docker-image")
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
    return os.path.relpath(export_contract.newest_export(root), root)


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
    if poll_ready(local_url(args.host, args.port), args.timeout, gave_up=lambda: server.poll() is not None,
                  interval=0.3):
        print("API ready on http://localhost:%d/predict  (stop: make stop_api api_port=%d)" % (args.port, args.port))
        return
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        raise UserError("the API on port %d was not ready after %d s, so it was stopped; see %s"
                        % (args.port, args.timeout, log_path))
    line = last_error_line(log_path, offset)
    raise UserError("the API on port %d exited (code %s): %s  [log: %s]"
                    % (args.port, server.returncode, line.replace("error: ", "", 1) if line else "no output", log_path))


# --- in a container --------------------------------------------------------------------------

ENGINE = "docker"  # Docker, or podman through its docker command
CONTAINER_PORT = 5000  # the image's PORT


def container_name(port):
    return "bert-api-%d" % port


def engine(*args, check=False):
    """(exit code, output) of `docker args`; a UserError when no engine is installed."""
    try:
        done = subprocess.run([ENGINE] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=600)
    except FileNotFoundError:
        raise UserError("docker=1 needs a container engine, and `docker` is not installed (or use docker=0)")
    if check and done.returncode != 0:
        raise UserError("`docker %s` failed: %s"
                        % (" ".join(args[:2]), (done.stdout.strip().splitlines() or ["?"])[-1]))
    return done.returncode, done.stdout


def mount_args(model_dir):
    """-v/-e arguments that serve `model_dir` (an export, or a folder of them) instead of the baked one."""
    if not model_dir:
        return []
    path = os.path.abspath(model_dir)
    if not os.path.isdir(path):
        raise UserError("model_dir %s is not a folder" % model_dir)
    inside = "/models/%s" % os.path.basename(path) if export_contract.is_export(path) else "/models"
    return ["-v", "%s:%s:ro" % (path, inside), "-e", "MODEL_DIR=%s" % inside]


def settings_args():
    """-e arguments for the service's settings set in this environment (WORKERS=2 make start_api ...),
    as a native start passes them on; the image fixes HOST, PORT and (unless mounted) MODEL_DIR."""
    from ..serving.settings import DEFAULTS
    return [arg for name in DEFAULTS if name in os.environ and name not in ("HOST", "PORT", "MODEL_DIR")
            for arg in ("-e", "%s=%s" % (name, os.environ[name]))]


def start_container(args):
    name = container_name(args.port)
    if engine("image", "inspect", args.docker_image)[0] != 0:
        raise UserError("no image %s: build it with `make build_api` (or start natively with docker=0)"
                        % args.docker_image)
    if engine("container", "inspect", name)[0] == 0:
        raise UserError("container %s exists already; stop it with `make stop_api api_port=%d docker=1`"
                        % (name, args.port))
    check_port(args.host, args.port, os.path.join(args.log_dir, "gunicorn-%d.pid" % args.port))
    started = time.monotonic()
    engine("run", "-d", "--name", name, "-p", "%s:%d:%d" % (args.host, args.port, CONTAINER_PORT),
           *(mount_args(args.model_dir) + settings_args() + [args.docker_image]), check=True)
    print("starting container %s of %s on %s:%d%s" % (name, args.docker_image, args.host, args.port,
                                                      " (model: %s)" % args.model_dir if args.model_dir else ""))
    def running():
        return engine("container", "inspect", "-f", "{{.State.Running}}", name)[1].strip() == "true"
    if poll_ready(local_url(args.host, args.port), args.timeout, gave_up=lambda: not running(), interval=0.3):
        print("API ready on http://localhost:%d/predict in %.1f s (stop: make stop_api api_port=%d docker=1)"
              % (args.port, time.monotonic() - started, args.port))
        return
    logs = engine("logs", name)[1]
    exited = not running()
    engine("rm", "-f", name)
    errors = [line for line in logs.splitlines() if line.startswith("error: ")] or logs.strip().splitlines()[-1:]
    raise UserError("the API container %s %s: %s" % (
        name, "exited" if exited else "was not ready after %d s, so it was removed" % args.timeout,
        errors[-1].replace("error: ", "", 1) if errors else "no output"))


def stop_container(args):
    name = container_name(args.port)
    if engine("container", "inspect", name)[0] != 0:
        print("no API container on port %d" % args.port)
        return
    engine("stop", "-t", "30", name, check=True)
    engine("rm", "-f", name)
    print("stopped the API container %s" % name)


def local_url(host, port):
    if host in ("0.0.0.0", "::", ""):
        return "http://127.0.0.1:%d" % port
    return "http://%s:%d" % (host if ":" not in host else "[%s]" % host, port)


def main(argv=None):
    args = parse_args(argv)
    if args.docker_image:
        return run_cli(stop_container if args.stop else start_container, args)
    return run_cli(start, args)


if __name__ == "__main__":
    sys.exit(main())
