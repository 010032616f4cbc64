"""`make bench`'s training rows: this trainer (padded, bucketed, the other runtime) and HF Trainer,
timed in turns with the GEMM ceiling."""
import os
import re
import sys

import numpy as np

from . import REPO_ROOT as ROOT
from ..shared.tf_compat import TF_VERSION
from .hf_peer_env import HF_PEER_SCRIPT
from .interleave import Contender
from .turns import BenchError, in_turns_with_gemm, sh, trainer_env


RATE = re.compile(r"step (\d+)/\d+ .* ([0-9.]+) examples/s")


def trainer_command(python, bert_dir, data_dir, out, steps, extra, log_every_steps):
    """This project's trainer on the bench's data: one evaluation, at the last step."""
    return [python, os.path.join(ROOT, "src", "train.py"), "--data-file", os.path.join(data_dir, "train.csv"),
            "--val-file", os.path.join(data_dir, "val_small.csv"), "--test-file",
            os.path.join(data_dir, "val_small.csv"), "--bert-dir", bert_dir, "--output-dir", out,
            "--cache-dir", os.path.join(out, "cache"), "--max-steps", str(steps), "--log-every-steps",
            str(log_every_steps), "--eval-every-steps", str(steps), "--skip-report", "--skip-onnx",
            "--overwrite"] + extra


def training_rate(bert_dir, data_dir, out, steps, extra, python=sys.executable):
    """examples/s of the trainer's own progress line, after the first (warm-up) interval."""
    result = sh(trainer_command(python, bert_dir, data_dir, out, steps, extra, steps // 3), env=trainer_env())
    if result.returncode != 0:
        raise BenchError("training failed:\n" + result.stdout[-3000:])
    rates = [float(m.group(2)) for m in RATE.finditer(result.stdout)]
    return float(np.mean(rates[1:])) if len(rates) > 1 else rates[-1]


# The trainers timed in turns (interleave.py): far more steps than a turn-taking run finishes.
ENDLESS_STEPS = 100000


BATCH_SIZE = 32  # passed to every timed trainer: steps/s x BATCH_SIZE = examples/s


def trainers_in_turns(bert_dir, data_dir, work, compare_runtime, peer, rounds, slice_s):
    """Every trainer and the GEMM ceiling, timed in turns in one run: {name: examples/s} for
    "padded" and "bucketed" (this runtime), "other-runtime" (bucketed, with --compare-runtime) and
    "hf" (when the peer's venv is there: `peer` is hf_peer_setup's (python, model dir)), and
    {"gemm-<engine>": GFLOP/s} (gemm.py, in this runtime)."""

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


def training_rows(timed, other_tf, train_ceiling, turns, turn_seconds):
    """The trainers timed in turns (`timed`: trainers_in_turns's Turns), as the issues' targets put
    them; `other_tf`: the other runtime's TF version, when it was timed."""
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
