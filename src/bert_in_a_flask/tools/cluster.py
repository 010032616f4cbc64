"""`make train_cluster workers=N`: a real multi-worker job on this machine, to try the cluster path.

    python -m bert_in_a_flask.tools.cluster --workers 2 -- --data-file ... --output-dir models/cluster

Starts one process per task on loopback ports: a parameter server (--ps 1; --ps 0 makes the
training tasks all-reduce instead, TF 2 only), a chief and N-1 workers that train, and an evaluator
that evaluates every checkpoint, exports the best one and writes the report. Each gets the TF_CONFIG
a scheduler (a Kubeflow TFJob, say) would set and runs the same `src/train.py` command; logs go to
<log-dir>/cluster-<role>-<index>.log. A task that dies can be started again (`launch`) and rejoins.

The cluster addresses are loopback, but TensorFlow's gRPC servers bind every interface (`[::]:port`)
and authenticate nobody: printed at every start (EXPOSED), and said in the README.
"""
import json
import os
import subprocess
import sys
import time

from ..shared.cli import ArgumentParser, non_negative_int, positive_int
from . import REPO_ROOT
from .http_client import free_port


EXPOSED = ("warning: TensorFlow's gRPC servers of these tasks listen on every network interface, without "
           "authentication or encryption; anyone who reaches their ports can read and change the model. Run a "
           "cluster only on a private network or behind a firewall.")


def cluster_spec(workers, ps=0):
    """{"chief": [...], "worker": [...], "ps": [...], "evaluator": [...]} on free loopback ports."""
    ports = set()
    while len(ports) < workers + ps + 1:
        ports.add(free_port())
    addresses = ["127.0.0.1:%d" % port for port in sorted(ports)]
    spec = {"chief": addresses[:1], "evaluator": addresses[-1:]}
    if workers > 1:
        spec["worker"] = addresses[1:workers]
    if ps:
        spec["ps"] = addresses[workers:workers + ps]
    return spec


def tasks(spec):
    return [(role, index) for role in ("ps", "chief", "worker", "evaluator")
            for index in range(len(spec.get(role, [])))]


def launch(spec, role, index, train_args, log_path, env=None):
    """One task of the cluster `spec`: `src/train.py train_args` with its TF_CONFIG (log appended)."""
    tf_config = json.dumps({"cluster": spec, "task": {"type": role, "index": index}})
    with open(log_path, "a") as log:
        return subprocess.Popen([sys.executable, os.path.join(REPO_ROOT, "src", "train.py")] + list(train_args),
                                cwd=REPO_ROOT, env=dict(env or os.environ, TF_CONFIG=tf_config), stdout=log,
                                stderr=subprocess.STDOUT)


def start(train_args, workers, log_dir, env=None, ps=0):
    """(spec, {(role, index): (Popen, log path)}) of a freshly started local cluster."""
    spec = cluster_spec(workers, ps)
    os.makedirs(log_dir, exist_ok=True)
    processes = {}
    for role, index in tasks(spec):
        log_path = os.path.join(log_dir, "cluster-%s-%d.log" % (role, index))
        processes[(role, index)] = (launch(spec, role, index, train_args, log_path, env), log_path)
    return spec, processes


def wait(processes, timeout):
    """{(role, index): exit code} once the chief, workers and evaluator are done; tasks still running
    after `timeout` s are killed (code None). Parameter servers serve until stopped: they are stopped
    then (code 0)."""
    deadline = time.monotonic() + timeout
    codes = {}
    for task, (process, _) in processes.items():
        if task[0] == "ps":
            continue
        try:
            codes[task] = process.wait(max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            codes[task] = None
    for task, (process, _) in processes.items():
        if process.poll() is None:
            process.kill()
            process.wait()
            if task[0] == "ps":
                codes[task] = 0
        elif task[0] == "ps":
            codes[task] = process.returncode  # a parameter server that ended by itself failed
    return codes


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=positive_int, default=2, help="training tasks: the chief and N-1 workers")
    parser.add_argument("--ps", type=non_negative_int, default=1,
                        help="parameter servers (0: synchronous all-reduce instead; TF 2 only)")
    parser.add_argument("--log-dir", default="models/logs", help="where each task's log goes")
    parser.add_argument("--timeout", type=positive_int, default=3600, help="seconds before the tasks are stopped")
    args = parser.parse_args(own)
    print(EXPOSED, file=sys.stderr)
    _, processes = start(train_args, args.workers, args.log_dir, ps=args.ps)
    for (role, index), (process, log_path) in processes.items():
        print("started %s %d (pid %d), log %s" % (role, index, process.pid, log_path))
    codes = wait(processes, args.timeout)
    for (role, index), code in codes.items():
        print("%s %d: %s" % (role, index, "done" if code == 0 else "exit code %s" % code))
    return 0 if all(code == 0 for code in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
