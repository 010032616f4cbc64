"""A new user's first hour (issue 11): every rough edge they hit, through the commands they type."""
import importlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from bert_in_a_flask.tools.loadtest import free_port
from helpers import ROOT, SRC, run_cli

VENV = sys.prefix  # the venv running the tests: make uses it as is
PYTHON = "python%d.%d" % sys.version_info[:2]


def make(*args, timeout=240, **env):
    return subprocess.run(["make", "--no-print-directory", "python=" + PYTHON, "venv_dir=" + VENV] + list(args),
                          cwd=ROOT, env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)


def error_lines(text):
    return [line for line in text.splitlines() if line.startswith("error: ")]


# --- 1, 2, 6: make start_api ---------------------------------------------------------------

@pytest.fixture
def api(trained, tmp_path):
    """`make start_api` on a free loopback port; stopped (make stop_api) afterwards."""
    port, log_dir = free_port(), str(tmp_path / "logs")
    started = make("start_api", "api_port=%d" % port, "model_dir=" + trained["export_dir"], "log_dir=" + log_dir,
                   HOST="127.0.0.1")
    assert started.returncode == 0, started.stdout + started.stderr
    yield {"port": port, "log_dir": log_dir, "log": os.path.join(log_dir, "api-%d.log" % port),
           "url": "http://127.0.0.1:%d" % port}
    stopped = make("stop_api", "api_port=%d" % port, "log_dir=" + log_dir)
    assert "stopped the API on port %d" % port in stopped.stdout


@pytest.mark.slow
def test_second_start_on_a_busy_port_fails_at_once_and_keeps_the_running_server(api, trained, tmp_path):
    from bert_in_a_flask.tools.loadtest import predict
    assert predict(api["url"], ["spring maven jvm"])[0] == 200
    with open(api["log"], "rb") as handle:
        log_before = handle.read()
    pid = int(open(os.path.join(api["log_dir"], "gunicorn-%d.pid" % api["port"])).read())

    started = time.monotonic()
    second = make("start_api", "api_port=%d" % api["port"], "model_dir=" + str(tmp_path / "another-model"),
                  "log_dir=" + api["log_dir"], HOST="127.0.0.1")
    assert second.returncode != 0 and time.monotonic() - started < 30
    errors = error_lines(second.stderr)
    assert len(errors) == 1, second.stderr
    assert "port %d is in use by the API started earlier (gunicorn pid %d)" % (api["port"], pid) in errors[0]
    assert "API ready" not in second.stdout

    with open(api["log"], "rb") as handle:
        log_after = handle.read()
    assert log_after.startswith(log_before) and b"\0" not in log_after  # never truncated
    status, body = predict(api["url"], ["spring maven jvm"])
    assert status == 200 and json.loads(body)["predictions"] == ["java"]  # the first model still answers


@pytest.mark.slow
def test_a_port_held_by_another_program_is_named_at_once(tmp_path):
    port = free_port()
    other = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(tmp_path))
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        started = time.monotonic()
        result = make("start_api", "api_port=%d" % port, "model_dir=" + str(tmp_path), "log_dir=" + str(tmp_path),
                      HOST="127.0.0.1")
        assert result.returncode != 0 and time.monotonic() - started < 30
        errors = error_lines(result.stderr)
        assert len(errors) == 1 and "port %d is in use by pid %d" % (port, other.pid) in errors[0], result.stderr
        assert "http.server" in errors[0]
    finally:
        other.send_signal(signal.SIGTERM)
        other.wait(10)


@pytest.mark.slow
def test_readiness_wait_stops_when_the_server_exits_and_shows_its_error(tmp_path):
    missing = str(tmp_path / "no-model-here")
    started = time.monotonic()
    result = make("start_api", "api_port=%d" % free_port(), "model_dir=" + missing, "log_dir=" + str(tmp_path),
                  HOST="127.0.0.1")
    assert result.returncode != 0
    assert time.monotonic() - started < 90  # not the 180 s readiness timeout
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "model folder not found: %s" % missing in errors[0], result.stderr


def test_start_api_without_model_dir_serves_the_newest_export_under_models(tmp_path):
    from bert_in_a_flask.tools.start_api import newest_export
    from bert_in_a_flask.shared.errors import UserError
    with pytest.raises(UserError, match="model_dir="):
        newest_export(str(tmp_path))
    for path in ("models/demo/trained_model/1700000100", "models/trained_model/1700000000",
                 "models/demo/trained_model/1700000050", "models/trained_model/temp-1800000000"):
        os.makedirs(str(tmp_path / path))
        open(str(tmp_path / path / "saved_model.pb"), "w").close()
    assert newest_export(str(tmp_path)) == "models/demo/trained_model/1700000100"


@pytest.mark.slow
def test_make_help_lists_every_target_and_the_variables_users_need():
    out = make("help").stdout
    with open(os.path.join(ROOT, "Makefile")) as handle:
        phony = re.search(r"^\.PHONY:(.*?)\n\n", handle.read(), re.S | re.M).group(1).replace("\\", " ").split()
    for target in phony:
        if target != "help":
            assert "make %s" % target in out or "/ %s" % target in out, target
    for variable in ("model_dir=", "api_port=", "logdir=", "tensorboard_port=", "gpu=", "args=", "python=",
                     "base=", "data=", "runtime="):
        assert variable in out, variable


# --- 3, 4, 8: the command lines -----------------------------------------------------------

@pytest.mark.slow
def test_predict_cli_checks_the_output_before_loading_the_model(tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("post\nspring maven jvm\n")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    no_model = str(tmp_path / "no-model")  # loading it would fail with another message
    for output, message in ((str(tmp_path / "missing" / "out.csv"), "--output folder does not exist: %s"
                             % (tmp_path / "missing")),
                            (str(folder), "--output %s is a folder" % folder)):
        result = run_cli("predict.py", ["--model", no_model, "--input", str(source), "--output", output])
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert error_lines(result.stderr) == [result.stderr.strip()] and message in result.stderr, result.stderr
    assert sorted(os.listdir(str(tmp_path))) == ["a-folder", "in.csv"] and os.listdir(str(folder)) == []


CLI_MODULES = {"train.py": "bert_in_a_flask.training.cli", "predict.py": "bert_in_a_flask.serving.predict_cli",
               "convert_minilm": "bert_in_a_flask.tools.convert_minilm",
               "download_data": "bert_in_a_flask.tools.download_data", "loadtest": "bert_in_a_flask.tools.loadtest",
               "bench": "bert_in_a_flask.tools.bench", "start_api": "bert_in_a_flask.tools.start_api"}
NUMERIC_FLAGS = {
    "bert_in_a_flask.training.cli": ["--batch-size", "--eval-batch-size", "--learning-rate",
                 "--num-train-epochs", "--eval-every-steps",
                 "--save-summary-steps", "--log-every-steps", "--keep-checkpoint-max", "--max-seq-length"],
    "bert_in_a_flask.serving.predict_cli": ["--chunk-size", "--max-batch-size"],
    "bert_in_a_flask.tools.loadtest": ["--clients", "--requests"],
    "bert_in_a_flask.tools.bench": ["--turns", "--turn-seconds", "--train-steps", "--requests", "--clients",
                                    "--per-client", "--rss-requests"],
    "bert_in_a_flask.tools.start_api": ["--port", "--timeout"],
}
NON_NEGATIVE_FLAGS = {"bert_in_a_flask.training.cli": ["--max-steps", "--seed", "--early-stopping-evals",
                                   "--intra-op-threads",
                                   "--inter-op-threads"]}
REQUIRED = {"bert_in_a_flask.serving.predict_cli": ["--input", "x.csv", "--output", "y.csv"],
            "bert_in_a_flask.tools.start_api": ["--port", "5000"]}


def parse(script, argv):
    module = importlib.import_module(script)
    parser_owner = getattr(module, "parse_args", None)
    if parser_owner is not None:
        return parser_owner(argv)
    return module.main(argv)  # bench/loadtest parse inside main; a bad flag exits before any work


def bad_values():
    cases = []
    for script, flags in NUMERIC_FLAGS.items():
        cases += [(script, flag, value) for flag in flags for value in ("0", "-3")]
    for script, flags in NON_NEGATIVE_FLAGS.items():
        cases += [(script, flag, "-1") for flag in flags]
    cases += [("bert_in_a_flask.training.cli", "--learning-rate", "nan"),
              ("bert_in_a_flask.training.cli", "--warmup-proportion", "1.5"),
              ("bert_in_a_flask.training.cli", "--batch-size", "eight"),
              ("bert_in_a_flask.training.cli", "--devices", "/cpu"),
              ("bert_in_a_flask.training.cli", "--devices", "gpu0"),
              ("bert_in_a_flask.training.cli", "--confidence-keeps", "1.5"),
              ("bert_in_a_flask.training.cli", "--confidence-keeps", "0"),
              ("bert_in_a_flask.training.cli", "--calibrate", "platt")]
    return cases


@pytest.mark.parametrize("script,flag,value", bad_values(), ids=lambda x: str(x))
def test_every_numeric_flag_is_checked_by_argparse(script, flag, value, capsys):
    argv = [a for a in REQUIRED.get(script, []) if a]
    if flag in argv:
        argv = argv[:argv.index(flag)] + argv[argv.index(flag) + 2:]
    with pytest.raises(SystemExit) as exit_info:
        parse(script, argv + [flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: argument %s" % flag), err


@pytest.mark.slow
def test_zero_batch_size_stops_at_once_in_one_line(tmp_path):
    """Through a real process: no TensorFlow start-up, no traceback, exit 2."""
    started = time.monotonic()
    result = run_cli("train.py", ["--batch-size", "0", "--output-dir", str(tmp_path)])
    assert result.returncode == 2 and time.monotonic() - started < 20
    assert result.stderr == "error: argument --batch-size: must be a positive integer, not 0 (see --help)\n"
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train.py", "predict.py"] + sorted(set(CLI_MODULES.values()) - {
    "bert_in_a_flask.training.cli", "bert_in_a_flask.serving.predict_cli"}))
def test_help_shows_every_default(script):
    result = run_cli(script, ["--help"], env=dict(os.environ, COLUMNS="400"))  # no wrapping inside a path
    assert result.returncode == 0
    blocks = help_blocks(result.stdout)
    for flag, default in flags_with_defaults(importlib.import_module(CLI_MODULES.get(script, script))):
        assert "(default: %s)" % (default,) in blocks[flag], (flag, blocks[flag])


def help_blocks(text):
    """{option: its help text} from argparse's --help output (option lines, then indented help)."""
    blocks, current = {}, None
    for line in text.splitlines():
        match = re.match(r"^  (-[^ ].*?)(  +|$)(.*)", line)
        if match:
            current = " ".join(match.group(3).split())
            for option in re.findall(r"(--?[\w-]+)", match.group(1)):
                blocks[option] = current
            keys = re.findall(r"(--?[\w-]+)", match.group(1))
        elif current is not None and line.startswith("   "):
            for option in keys:
                blocks[option] = blocks[option] + " " + " ".join(line.split())
    return blocks


def flags_with_defaults(module):
    import argparse
    captured = {}
    original = argparse.ArgumentParser.parse_args

    def capture(self, args=None, namespace=None):
        captured["parser"] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = capture
    try:
        (getattr(module, "parse_args", None) or module.main)([])
    except SystemExit:
        pass
    finally:
        argparse.ArgumentParser.parse_args = original
    return [(action.option_strings[-1], action.default) for action in captured["parser"]._actions
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
            and action.dest != "help"]


@pytest.mark.slow
def test_a_cli_run_without_the_venv_says_how_to_run_it(tmp_path):
    """`python src/train.py` with a Python lacking our packages: one line pointing at the venv."""
    result = subprocess.run([sys.executable, "-S", os.path.join(SRC, "train.py"), "--data-file", "x.csv",
                             "--output-dir", str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "No module named" in errors[0] and "make" in errors[0] and "venv" in errors[0]


# --- 5: --overwrite deletes last -----------------------------------------------------------

@pytest.mark.slow
def test_overwrite_deletes_nothing_when_a_check_fails(tiny_bert_dir, tmp_path):
    out = tmp_path / "out"
    for name in ("checkpoints", "report"):
        (out / name).mkdir(parents=True)
        (out / name / "precious").write_text("keep me")
    bad_data = tiny_bert_dir + "/no-such.csv"
    result = run_cli("train.py", ["--data-file", bad_data, "--bert-dir", tiny_bert_dir, "--output-dir", str(out),
                                  "--max-seq-length", "32", "--overwrite"])
    assert result.returncode == 2 and "data file not found" in result.stderr
    for name in ("checkpoints", "report"):
        assert (out / name / "precious").read_text() == "keep me"


# --- 7: the demo's curl line, TensorBoard ------------------------------------------------

@pytest.mark.slow
def test_the_printed_curl_example_runs_as_printed():
    port = 5078
    printed = make("curl_example", "api_port=%d" % port).stdout.strip()
    demo_echo = [line for line in make("-n", "demo", "api_port=%d" % port).stdout.splitlines()
                 if line.startswith("echo '$ '")]
    assert len(demo_echo) == 1
    shown = subprocess.run(["bash", "-c", demo_echo[0]], stdout=subprocess.PIPE, universal_newlines=True).stdout
    assert shown.strip() == "$ " + printed
    argv = shlex.split(printed)
    assert argv[0] == "curl" and argv[-1] == "http://localhost:%d/predict" % port
    body = json.loads(argv[argv.index("--data") + 1])
    assert body["X"][0] == "Why does my code keep throwing me null pointer exception?"


@pytest.mark.slow
def test_tensorboard_reads_every_run_under_models_or_logdir():
    assert "--logdir models " in make("-n", "tensorboard").stdout
    assert "--logdir models/demo " in make("-n", "tensorboard", "logdir=models/demo").stdout


# --- 9, 10, 11: logs and metadata ----------------------------------------------------------

@pytest.mark.slow
def test_one_log_line_per_request(trained, tmp_path):
    from bert_in_a_flask.tools.loadtest import Server, http
    server = Server(trained["export_dir"], str(tmp_path / "server.log"))
    try:
        assert server.wait_ready(), server.log()[-3000:]
        for _ in range(5):
            assert http(server.url + "/predict", json.dumps({"X": ["react npm"]}).encode())[0] == 200
    finally:
        server.stop()
    lines = [line for line in server.log().splitlines() if "/predict" in line]
    assert len(lines) == 5 and all(json.loads(line)["path"] == "/predict" for line in lines)


@pytest.mark.slow  # the session's trained export
def test_export_names_its_base_model_and_its_own_time(trained, client):
    meta = client.get("/metadata").get_json()
    assert meta["base_model"] == "bert-L2-H32-A2-uncased"
    import calendar
    created = calendar.timegm(time.strptime(meta["created"], "%Y-%m-%dT%H:%M:%SZ"))
    export_time = int(os.path.basename(trained["export_dir"]))
    assert abs(created - export_time) <= 5  # the export's time, not the start of training
    assert meta["model"] == "bert-L2-H32-A2-uncased/%d (%s)" % (export_time, meta["backend"])


@pytest.mark.slow  # the session's trained export
def test_training_says_where_it_runs_without_tf_noise(trained):
    log = trained["log"]
    assert re.search(r"devices: CPU \(\d+ cores; no GPU visible to TensorFlow\)", log)
    assert "cuInit" not in log
    assert not re.search(r"^\S+ \S+: [EW] tensorflow/|^[EW]\d{4} ", log, re.M)  # TF's C++ log format


# --- 12, 13: readiness and the micro-batcher -----------------------------------------------

@pytest.mark.slow  # the session's trained export
def test_ready_is_503_until_the_model_is_loaded_and_predict_waits_for_it(predictor, monkeypatch, tmp_path):
    from bert_in_a_flask.serving import app as app_module
    from bert_in_a_flask.serving import settings
    release = threading.Event()

    def slow_build(app, export_dir):
        release.wait(30)
        return predictor

    monkeypatch.setattr(app_module, "build_predictor", slow_build)
    app = app_module.create_app(settings.from_env({}, MODEL_DIR=predictor.export_dir, LOG_FILE=str(tmp_path / "c.log")),
                                load_in_background=True)
    client = app.test_client()
    assert client.get("/health_check").status_code == 200
    response = client.get("/ready")
    assert response.status_code == 503 and response.get_json()["reason"] == "loading the model"

    answers = []
    waiting = threading.Thread(target=lambda: answers.append(
        app.test_client().post("/predict", json={"X": ["spring maven jvm"]})))
    waiting.start()
    time.sleep(0.3)
    assert not answers  # the request waits for the model instead of failing
    release.set()
    waiting.join(30)
    assert answers[0].status_code == 200 and answers[0].get_json()["predictions"] == ["java"]
    assert client.get("/ready").status_code == 200


def test_a_model_that_fails_to_load_in_the_background_is_reported(monkeypatch, tmp_path):
    from bert_in_a_flask.serving import app as app_module
    from bert_in_a_flask.serving import settings
    failures = []
    app_module.create_app(settings.from_env({}, MODEL_DIR=str(tmp_path / "none"), LOG_FILE=str(tmp_path / "c.log")),
                          load_in_background=True, on_load_failure=failures.append)
    deadline = time.monotonic() + 60
    while not failures and time.monotonic() < deadline:
        time.sleep(0.05)
    assert failures and "model folder not found: %s" % (tmp_path / "none") in str(failures[0])


def catch(function, *args):
    try:
        return function(*args)
    except Exception as exc:  # the test looks at what the caller got
        return exc


class Dies(BaseException):
    """Something that kills a thread (not an Exception a handler would catch)."""


def test_a_failed_forward_pass_reaches_every_waiting_request_and_the_batcher_goes_on():
    from bert_in_a_flask.serving.batcher import MicroBatcher
    passes, gate = [], threading.Event()

    def forward(id_lists):
        passes.append(len(id_lists))
        if len(passes) == 1:
            gate.wait(10)  # the three callers below queue up meanwhile and share the next pass
            return [[0.0] for _ in id_lists]
        if len(passes) == 2:
            raise RuntimeError("forward failed")
        return [[float(len(ids))] for ids in id_lists]

    batcher = MicroBatcher(forward, max_batch_size=8, max_wait_ms=200, timeout_s=10)
    first = threading.Thread(target=batcher.submit, args=([[9]],))
    first.start()
    time.sleep(0.1)
    results = {}

    def call(n):
        try:
            results[n] = batcher.submit([[1] * n])
        except RuntimeError as exc:
            results[n] = exc

    threads = [threading.Thread(target=call, args=(n,)) for n in (1, 2, 3)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    gate.set()
    for thread in threads + [first]:
        thread.join(10)
    assert passes[:2] == [1, 3]  # the three shared the pass that failed
    assert sorted(results) == [1, 2, 3]
    assert all(isinstance(result, RuntimeError) and str(result) == "forward failed" for result in results.values())
    assert batcher.alive and batcher.pending_texts == 0
    assert batcher.submit([[1, 2, 3, 4]]) == [[4.0]]


@pytest.mark.slow  # the session's trained export
def test_a_dead_batcher_thread_fails_requests_at_once_and_ready_says_so(trained, tmp_path):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.app import create_app
    from bert_in_a_flask.shared.errors import ServiceUnavailable
    from bert_in_a_flask.serving.predictor import Predictor, QueuePolicy
    predictor = Predictor(trained["export_dir"], max_batch_size=8, queue=QueuePolicy(wait_ms=1, timeout_s=5))
    app = create_app(settings.from_env({}, LOG_FILE=str(tmp_path / "c.log")), predictor=predictor)
    client = app.test_client()
    assert client.get("/ready").status_code == 200

    def dying_forward(id_lists):
        raise Dies()

    predictor._batcher._forward = dying_forward
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        predictor.forward([[2, 3]])  # the request in flight gets the error instead of hanging
    predictor._batcher._thread.join(5)
    assert time.monotonic() - started < 5 and not predictor.healthy
    response = client.post("/predict", json={"X": ["spring"]})
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert "micro-batcher" in response.get_json()["error"]
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.get_json()["reason"] == "the micro-batcher stopped"


def test_a_request_waits_no_longer_than_the_timeout():
    from bert_in_a_flask.serving.batcher import MicroBatcher
    from bert_in_a_flask.shared.errors import ServiceUnavailable
    batcher = MicroBatcher(lambda id_lists: time.sleep(5) or [[0.0]] * len(id_lists), timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="overloaded"):
        batcher.submit([[1]])
    assert time.monotonic() - started < 2


def test_a_lone_sequential_caller_does_not_wait_for_company():
    from bert_in_a_flask.serving.batcher import MicroBatcher
    batcher = MicroBatcher(lambda id_lists: [[1.0]] * len(id_lists), max_batch_size=8, max_wait_ms=1000, timeout_s=5)
    started = time.monotonic()
    for _ in range(3):
        assert batcher.submit([[1]]) == [[1.0]]
    assert time.monotonic() - started < 1.0  # waiting for company would take 3 x 1 s
    assert not batcher.last_pass_shared


def test_concurrent_callers_still_share_forward_passes():
    from concurrent.futures import ThreadPoolExecutor
    from bert_in_a_flask.serving.batcher import MicroBatcher
    passes = []

    def forward(id_lists):
        passes.append(len(id_lists))
        time.sleep(0.02)  # the others queue up meanwhile
        return [[float(ids[0])] for ids in id_lists]

    batcher = MicroBatcher(forward, max_batch_size=64, max_wait_ms=20, timeout_s=10)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda i: batcher.submit([[i]]), range(48)))
    assert answers == [[[float(i)]] for i in range(48)]  # each caller gets its own row back
    assert len(passes) < 48 and max(passes) > 1


# --- 15: clocks and the user-error type ----------------------------------------------------

@pytest.mark.slow  # the session's trained export
def test_deadlines_follow_the_monotonic_clock_and_a_wall_clock_step_breaks_nothing(client, app, monkeypatch):
    from bert_in_a_flask.serving import batcher as batcher_module
    from helpers import call_log
    wall = [2e9]

    def stepping_back():
        wall[0] -= 3600.0  # NTP sets the clock back an hour at every look
        return wall[0]

    monkeypatch.setattr(time, "time", stepping_back)
    steady = [1000.0]
    real_monotonic = time.monotonic
    monkeypatch.setattr(batcher_module.time, "monotonic", lambda: steady[0] + real_monotonic())
    gate = threading.Event()
    batcher = batcher_module.MicroBatcher(lambda id_lists: gate.wait(10) and [[1.0]] * len(id_lists),
                                          max_batch_size=1, max_wait_ms=0, timeout_s=5)
    busy = threading.Thread(target=batcher.submit, args=([[1]],))
    busy.start()
    time.sleep(0.05)
    queued, answer = threading.Thread(target=lambda: answer.append(catch(batcher.submit, [[2]]))), []
    started = real_monotonic()
    queued.start()
    time.sleep(0.1)
    steady[0] += 6.0  # the clock the queue's deadlines use moves past the queued request's 5 s
    queued.join(5)
    assert real_monotonic() - started < 1.0  # 6 s on the monotonic clock, not of real waiting
    assert isinstance(answer[0], batcher_module.ServiceUnavailable) and "within 5 s" in str(answer[0])
    gate.set()
    busy.join(10)
    assert client.post("/predict", json={"X": ["react"]}).status_code == 200
    assert call_log(app)[-1]["latency_ms"] >= 0  # perf_counter: the wall clock's steps never show


@pytest.mark.slow  # the session's trained export
def test_a_user_error_raised_while_answering_is_a_4xx_json(predictor, tmp_path):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.app import create_app
    from bert_in_a_flask.shared.errors import UserError

    class Picky(object):
        name, labels, config, export_dir = predictor.name, predictor.labels, predictor.config, predictor.export_dir
        multi_label = False

        def __init__(self):
            self.calls = 0

        def predict(self, texts, client_gone=None, min_confidence=0.0, coverage=None, max_sequences=None):
            self.calls += 1
            if self.calls > 1:  # after the warm-up
                raise UserError("text 0 is in a language this model was not trained on", 422)
            return predictor.predict(texts)

        def confidence_floor(self, setting):
            return predictor.confidence_floor(setting)

    client = create_app(settings.from_env({}, LOG_FILE=str(tmp_path / "c.log")), predictor=Picky()).test_client()
    response = client.post("/predict", json={"X": ["hola"]})
    assert response.status_code == 422
    assert response.get_json()["error"] == "text 0 is in a language this model was not trained on"


def test_bad_serving_settings_are_named(tmp_path):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.shared.errors import UserError
    with pytest.raises(UserError, match="MAX_BATCH_SIZE must be a positive integer, not '0'"):
        settings.from_env({"MAX_BATCH_SIZE": "0"})
    with pytest.raises(UserError, match="MICRO_BATCHING must be one of"):
        settings.from_env({"MICRO_BATCHING": "maybe"})


@pytest.mark.slow
def test_converter_never_deletes_a_model_it_did_not_write(tmp_path):
    google = tmp_path / "pretrained"
    google.mkdir()
    for name in ("bert_config.json", "vocab.txt", "bert_model.ckpt.index"):
        (google / name).write_text("google's " + name)
    result = run_cli("bert_in_a_flask.tools.convert_minilm",
                     ["--output", str(google), "--wheel-dir", str(tmp_path / "no-wheels")])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "%s already holds a model this converter did not write" % google in result.stderr
    assert sorted(os.listdir(str(google))) == ["bert_config.json", "bert_model.ckpt.index", "vocab.txt"]
    assert (google / "vocab.txt").read_text() == "google's vocab.txt"
    assert sorted(os.listdir(str(tmp_path))) == ["pretrained"]  # and no wheel was fetched
