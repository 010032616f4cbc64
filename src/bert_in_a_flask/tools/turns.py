"""The bench's timing in turns (interleave.py) with this machine's GEMM beside every contender, shared
by `make bench`'s training rows (bench_training.py) and its serving rows (serving_turns.py)."""
import os
import subprocess
import sys

from . import REPO_ROOT as ROOT, gemm
from .interleave import Contender, interleaved_turns, rate


class BenchError(RuntimeError):
    """A measurement that could not be taken: the bench's CLI prints it as one `error:` line."""


def sh(args, **kwargs):
    return subprocess.run(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, **kwargs)


def trainer_env():
    # Importing TF 2 sets TF2_BEHAVIOR=1 in this process's environment; a TF 1.15 trainer that
    # inherits it switches to TF 2 shapes and fails in bert's run_classifier.
    return {name: value for name, value in os.environ.items() if name != "TF2_BEHAVIOR"}


GEMM_ENGINES = gemm.available_engines()  # the fastest one sets both ceilings


def in_turns_with_gemm(contenders, per_step, rounds, slice_s, what, **kwargs):
    """`contenders` and this machine's GEMM (gemm.py: "gemm-<engine>", each of GEMM_ENGINES) in turns: Turns of
    steps/s x `per_step` (examples or titles per step), and GFLOP/s for the GEMMs. `what` names the
    contenders when one fails; `kwargs` go to interleaved_turns."""
    contenders = list(contenders) + [
        Contender("gemm-" + engine, [sys.executable, "-m", "bert_in_a_flask.tools.gemm", engine], env=trainer_env())
        for engine in GEMM_ENGINES]
    try:
        turns = interleaved_turns(contenders, slice_s=slice_s, rounds=rounds, **kwargs)
    except RuntimeError as error:
        raise BenchError("%s failed: %s" % (what, error))

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
