"""The bench's serving comparison, timed in turns (interleave.py) so that this machine's drift falls
on every contender alike: 128 test titles per step for each of

    predict        a real server with the default settings (gunicorn, BACKEND auto, micro-batching),
                   and a client posting the whole test set 128 titles per request, in file order;
                   both in one process group, so a pause stops both
    predict-int8   the same with QUANTIZE=int8
    forward        our forward pass alone, the HF peer's way: the whole set sorted by length, batches
                   of 32, visited in a fixed shuffled order (the Predictor, in-process, pre-tokenized)
    hf             the HF peer's raw forward, the same way (hf_peer.py --forward-steps)
    gemm-*         this machine's GEMM (gemm.py), for the ceiling

    python -m bert_in_a_flask.tools.serving_turns predict|forward EXPORT TEST_CSV [QUANTIZE]
runs one of ours (what the bench starts for each turn-taker).
"""
import csv
import os
import random
import sys
import tempfile

from ..serving.predictor import Predictor
from .hf_peer_env import HF_PEER_SCRIPT
from .interleave import Contender
from .loadtest import Server, predict, serving_python
from .turns import in_turns_with_gemm, trainer_env

PER_STEP = 128  # titles per step, for every contender: the 128 texts per request
BATCH_SIZE = 32  # the HF peer's batch, and ours in `forward`
PAUSE_PROOF_TIMEOUT_S = 3600  # a /predict's socket timeout in `predict` (see predict_steps)


def read_titles(test_csv):
    with open(test_csv, newline="", encoding="utf-8") as handle:
        return [row["post"] for row in csv.DictReader(handle)]


def predict_steps(export_dir, test_csv, quantize="none"):
    """Start a server with the default settings and post the test set, 128 titles per request."""
    titles = read_titles(test_csv)
    log = tempfile.NamedTemporaryFile(prefix="serving-turns-", suffix=".log", delete=False).name
    server = Server(export_dir, log, python=serving_python(), ACCESS_LOG="/dev/null", QUANTIZE=quantize)
    try:
        if not server.wait_ready():
            with open(log) as handle:
                sys.exit("server did not become ready: %s" % handle.read()[-2000:])
        step, at = 0, 0
        while True:
            chunk = titles[at:at + PER_STEP]
            at = (at + PER_STEP) % (len(titles) - PER_STEP)
            # The turn-taker pauses this process and its server together, often mid-request, for the other
            # contenders' turns (7 x 10 s with the defaults): a socket timeout would count those pauses, so
            # it is far longer; a server that really stalls is caught by the turn-taker's own step timeout.
            status, answer = predict(server.url, chunk, timeout=PAUSE_PROOF_TIMEOUT_S)
            if status != 200:
                sys.exit("/predict answered %d: %s" % (status, answer[:500].decode("utf-8", "replace")))
            step += 1
            print("step %d" % step, flush=True)
    finally:
        server.stop()
        os.remove(log)


def forward_steps(export_dir, test_csv):
    """Our forward pass the HF peer's way (see the module's docstring)."""
    predictor = Predictor(export_dir, max_batch_size=BATCH_SIZE)
    ids = sorted(predictor.preprocess(read_titles(test_csv)), key=len)
    batches = [ids[start:start + BATCH_SIZE] for start in range(0, len(ids) - BATCH_SIZE + 1, BATCH_SIZE)]
    random.Random(0).shuffle(batches)
    step, at = 0, 0
    while True:
        for _ in range(PER_STEP // BATCH_SIZE):
            predictor.forward_batch(batches[at % len(batches)])
            at += 1
        step += 1
        print("step %d" % step, flush=True)


def serving_in_turns(export_dir, test_csv, peer, rounds, slice_s, int8=True):
    """turns.Turns of titles/s for predict, predict-int8 (when `int8`: the export has an accepted int8
    copy), forward and hf (when `peer` is hf_peer_setup's (python, model dir)), and GFLOP/s for gemm-*."""

    def ours(name, *args):
        return Contender(name, [sys.executable, "-m", "bert_in_a_flask.tools.serving_turns"] + list(args),
                         env=trainer_env())
    contenders = [ours("predict", "predict", export_dir, test_csv), ours("forward", "forward", export_dir, test_csv)]
    if int8:
        contenders.append(ours("predict-int8", "predict", export_dir, test_csv, "int8"))
    if not isinstance(peer, str):
        python, model_dir = peer
        contenders.append(Contender("hf", [python, HF_PEER_SCRIPT, "--model-dir", model_dir, "--titles", test_csv,
                                           "--batch-size", str(BATCH_SIZE),
                                           "--forward-steps", str(PER_STEP // BATCH_SIZE)]))
    return in_turns_with_gemm(contenders, PER_STEP, rounds, slice_s, "a timed server or forward pass",
                              warm_up_steps=3)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (3, 4) or argv[0] not in ("predict", "forward"):
        sys.exit(__doc__)
    if argv[0] == "predict":
        predict_steps(*argv[1:])
    else:
        forward_steps(*argv[1:3])


if __name__ == "__main__":
    main()
