"""`make bench`'s serving rows: the backends in-process and through /predict, a call's stages,
micro-batching under wrk, latency, load and memory of a real server, and the HF peer beside them."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np

from ..serving.predictor import Predictor
from .loadtest import Server, predict, run_clients, serving_python
from .turns import GEMM_ENGINES, BenchError


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
        raise BenchError("load test failed: %s" % failures[:5])
    return len(latencies) / wall


def serve(export_dir, log_path, **env):
    env.setdefault("WORKERS", "1")
    # The serving environment serves (no TensorFlow there); BACKEND=tf, the SavedModel, needs the trainer's.
    python = sys.executable if env.get("BACKEND") == "tf" else serving_python()
    server = Server(export_dir, log_path, python=python, ACCESS_LOG="/dev/null", **env)
    if not server.wait_ready():
        server.stop()
        raise BenchError("server did not become ready; see %s" % log_path)
    return server


def original_way_ms(export_dir, texts, max_seq_length):
    """The 2019 sketch: one text per forward pass, padded to max_seq_length."""
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


# What serves, as (row name, BACKEND, QUANTIZE).
SERVING_VARIANTS = (("tf", "tf", "none"), ("onnx", "onnx", "none"), ("onnx-int8", "onnx", "int8"))


def serving_backends(export_dir, titles, labels, logs, int8=True, batch_sizes=(8, 16, 32, 64), per_request=128):
    """Each variant's best MAX_BATCH_SIZE (in-process), its test accuracy and label agreement with the
    SavedModel, then the whole test set through /predict, one variant after another (the ratios to HF
    and the ceiling are timed in turns: serving_rows). `int8`: the export has an accepted int8 copy
    (a short training run's copy can miss the conversion's 0.5-point check; its row then says so)."""
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
    if not shutil.which("wrk"):
        return [("micro-batching under wrk", "skipped", "wrk is not installed (apt-get install wrk)")]
    body = json.dumps({"X": [title]})
    rates = {}
    for mode in ("0", "1"):
        server = serve(export_dir, os.path.join(logs, "wrk-%s.log" % mode), MICRO_BATCHING=mode)
        for n in clients:
            rate, errors = wrk_rate(server.url, body, n, seconds, work)
            if errors:
                raise BenchError("wrk saw %d failed requests at %d clients" % (errors, n))
            rates[(mode, n)] = rate
        server.stop()
    return [("wrk, %d connections x 1 title: req/s micro-batching off -> on" % n,
             "%.0f -> %.0f" % (rates[("0", n)], rates[("1", n)]), "%.2fx" % (rates[("1", n)] / rates[("0", n)]))
            for n in clients]


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


def latency_load_and_memory_rows(export_dir, titles, logs, requests, clients, per_client, rss_requests):
    """A real server's latency (1 and 32 titles), the 2019 sketch's way beside it, load with
    micro-batching off and on (and two workers), and the worker's memory over `rss_requests`
    requests."""
    original = original_way_ms(export_dir, titles[:32], 128)
    server = serve(export_dir, os.path.join(logs, "off.log"), MICRO_BATCHING="0", THREADS="16")
    one = latencies_ms(server.url, titles[:1], requests)
    many = latencies_ms(server.url, titles[:32], max(10, requests // 3))
    off = throughput(server.url, titles, clients, per_client)
    server.stop()

    server = serve(export_dir, os.path.join(logs, "on.log"), MICRO_BATCHING="1", THREADS="16")
    on = throughput(server.url, titles, clients, per_client)  # also the warm-up for RSS
    rss_warm = sum(rss for rss, _ in server.worker_rss_mib().values())
    done = 0
    while done < rss_requests:
        throughput(server.url, titles, clients, per_client)
        done += clients * per_client
    rss_after, rss_peak = [sum(x) for x in zip(*server.worker_rss_mib().values())]
    server.stop()

    # The default of one worker: a second one splits the same two cores and doubles the memory.
    server = serve(export_dir, os.path.join(logs, "two.log"), MICRO_BATCHING="1", THREADS="16", WORKERS="2")
    throughput(server.url, titles, clients, 5)
    two_workers = throughput(server.url, titles, clients, per_client)
    server.stop()

    rows = [
        ("/predict 1 title: p50 / p99 ms", "%.1f / %.1f" % (np.percentile(one, 50), np.percentile(one, 99)),
         "target p50 <= 25 ms (TF2)"),
        ("/predict 32 titles: p50 / p99 ms", "%.1f / %.1f" % (np.percentile(many, 50), np.percentile(many, 99)), ""),
        ("original way, 32 titles one by one padded to 128: ms", "%.1f" % original,
         "%.1fx slower than /predict p50 (target >= 5x)" % (original / np.percentile(many, 50))),
        ("%d clients x 1 title, micro-batching off: req/s" % clients, "%.1f" % off, ""),
        ("%d clients x 1 title, micro-batching on: req/s" % clients, "%.1f" % on,
         "%.2fx off (target >= 2x)" % (on / off)),
        ("%d clients x 1 title, micro-batching on, 2 workers: req/s" % clients, "%.1f" % two_workers,
         "%.2fx one worker" % (two_workers / on)),
        ("worker RSS MiB: after warm-up / after %d requests (peak)" % done,
         "%.0f / %.0f (%.0f)" % (rss_warm, rss_after, rss_peak),
         "%+.1f%% (target within 10%%)" % (100.0 * (rss_after - rss_warm) / rss_warm)),
    ]
    return rows, float(np.percentile(one, 50))


def without_calibration_tail(onnx_file, output_file):
    """A copy of `onnx_file` answering the softmax before the calibration's (Log, Max, Mul by 1/T,
    Softmax: training/model.py) — the graph an uncalibrated export serves."""
    import onnx
    model = onnx.load(onnx_file)
    producer = {name: node for node in model.graph.node for name in node.output}
    node, ops = producer[model.graph.output[0].name], []
    while True:
        ops.append(node.op_type)
        node = producer[node.input[0]]
        if node.op_type == "Softmax":
            break
    width = model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value
    del model.graph.output[:]
    model.graph.output.extend([onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT,
                                                                  ["batch", width])])
    onnx.save(model, output_file)
    return ops


def calibration_cost_rows(export_dir, titles, work, per_request=128, rounds=7):
    """What calibration costs a /predict: the export's ONNX graph with and without its calibration
    tail, in turns over the same requests (medians), and the floor and prediction sets in postprocess."""
    raw_file = os.path.join(work, "uncalibrated.onnx")
    tail = without_calibration_tail(os.path.join(export_dir, "model.onnx"), raw_file)
    calibrated = Predictor(export_dir, backend="onnx")
    uncalibrated = Predictor(export_dir, onnx_file=raw_file)
    ids = calibrated.preprocess(titles[:2048])
    requests = [ids[i:i + per_request] for i in range(0, len(ids), per_request)]
    # Request by request, the two graphs in alternating order, so the machine's drift (a third within
    # minutes here) falls on both alike; each round's ratio is over all its requests.
    ratios, totals = [], {"calibrated": 0.0, "uncalibrated": 0.0}
    pair = (("calibrated", calibrated), ("uncalibrated", uncalibrated))
    for round_ in range(rounds + 1):
        spent = {"calibrated": 0.0, "uncalibrated": 0.0}
        for i, request in enumerate(requests):
            for name, predictor in (pair if i % 2 else pair[::-1]):
                started = time.perf_counter()
                predictor.forward_sorted(request)
                spent[name] += time.perf_counter() - started
        if round_:  # the first round warms up
            ratios.append(spent["calibrated"] / spent["uncalibrated"])
            totals = {name: totals[name] + spent[name] for name in spent}
    probabilities = calibrated.forward_sorted(ids)
    post = {}
    for name, floor, coverage in (("none", 0.0, None), ("floor", 0.5, None), ("floor + coverage 0.9", 0.5, 0.9)):
        if coverage is not None and coverage not in calibrated.coverage_quantiles():
            continue
        started = time.perf_counter()
        for start in range(0, len(probabilities), per_request):
            calibrated.postprocess(probabilities[start:start + per_request], floor, coverage)
        post[name] = time.perf_counter() - started
    calibrated.close()
    uncalibrated.close()
    forward = totals["calibrated"] / rounds
    return [("calibration tail (%s) in the ONNX forward, %d titles, %d per request" % (", ".join(reversed(tail)),
                                                                                    len(ids), per_request),
             "%+.1f%%" % (100 * (totals["calibrated"] / totals["uncalibrated"] - 1)),
             "rounds %+.1f%% to %+.1f%% (target: /predict within 3%%)" % (100 * (min(ratios) - 1),
                                                                        100 * (max(ratios) - 1))),
            ("postprocess ms per %d titles: %s" % (len(ids), " / ".join(post)),
             " / ".join("%.1f" % (1000 * t) for t in post.values()),
             "%.2f%% of the forward at most" % (100 * max(post.values()) / forward))]
