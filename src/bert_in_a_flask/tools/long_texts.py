"""`make long_texts`: long documents, head vs head+tail vs windows on one split. 20 Newsgroups without
its label leaks (download_data.write_newsgroups), --train-per-group training posts per group (seeded),
the whole validation and test splits; the demo's recipe at --max-seq-length 128 for 3 epochs, trained
once per truncation; their test accuracy beside the report's TF-IDF + linear SVM, and what each costs:
training examples/s and documents/s (the trainer's median), and test documents/s through the predictor
(docs/bench/long_texts-<cpu>-tf<v>.md). The windows run is also scored with the same model's windows
pooled the other way (max beside the default mean).

    python -m bert_in_a_flask.tools.long_texts [--train-per-group 100] [--truncations windows]
        [--suffix NAME] -- TRAINER FLAGS

A variant of the recipe is the recipe plus its changes, which win (`make long_texts
args="--truncations windows --suffix seq256 -- --max-seq-length 256"`); `--suffix` keeps its
results beside the recipe's. The trainer's window flags (--window-stride, --max-windows,
--window-pooling, --window-loss) go to the windows run only.
"""
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from argparse import ArgumentTypeError

from . import download_data
from ..serving.predictor import Predictor
from ..shared.cli import ArgumentParser, positive_int
from ..shared.errors import run_cli
from ..shared import windows
from ..shared.text import TRUNCATIONS, WINDOW_POOLINGS  # the trainer's choices
from .bench_results import check_tool_flags, flag_groups, publish, split_trainer_flags
from .ood import read_rows, train, write_rows
from ..training.cli import WINDOW_DEFAULTS

WINDOW_FLAGS = tuple("--" + name.replace("_", "-") for name in WINDOW_DEFAULTS)  # the trainer refuses them elsewhere

THROUGHPUT = re.compile(r"step \d+/\d+\s+([0-9.]+) examples/s")
WINDOWS = re.compile(r"(\d+) windows of (\d+) texts(, whole texts a batch)?")


def long_text_split(work, per_group, seed):
    """The data folder: `per_group` training posts of each group, val and test whole."""
    import csv
    csv.field_size_limit(1 << 30)
    source = os.path.join(work, "newsgroups")
    download_data.write_newsgroups(source)
    folder = os.path.join(work, "split")
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    by_group = {}
    for row in read_rows(os.path.join(source, "train.csv")):
        by_group.setdefault(row["tags"], []).append(row)
    chosen = [row for group in sorted(by_group) for row in rng.sample(by_group[group], min(per_group,
                                                                                           len(by_group[group])))]
    write_rows(chosen, os.path.join(folder, "train.csv"))
    for name in ("val", "test"):
        write_rows(read_rows(os.path.join(source, name + ".csv")), os.path.join(folder, name + ".csv"))
    return folder


def training_speed(log_text):
    """(examples/s, documents/s) of a training log: the median progress line, and per document."""
    rates = [float(rate) for rate in THROUGHPUT.findall(log_text)]
    examples_per_s = statistics.median(rates) if rates else float("nan")
    windows = WINDOWS.search(log_text)
    per_document = int(windows.group(1)) / float(windows.group(2)) if windows else 1.0
    if windows and windows.group(3):  # --window-loss text: a progress line's examples are whole texts
        return examples_per_s * per_document, examples_per_s, per_document
    return examples_per_s, examples_per_s / per_document, per_document  # windows per document


def test_speed(predictor, texts):
    """Test documents/s through the predictor (its TF backend: the runs skip the ONNX copy)."""
    predictor.predict_proba(texts[:64])  # warm
    start = time.perf_counter()
    predictor.predict_proba(texts)
    return len(texts) / (time.perf_counter() - start)


def accuracy_by_pooling(predictor, texts, labels):
    """{pooling: (test accuracy, macro-F1)} of a single-label windowed export's windows pooled each
    way. Pooling happens after the forward pass and training sees single windows, so the other pooling
    is the same model answering otherwise (with the temperature fitted for the export's own pooling,
    which can move a max-pooled label between near-equal windows)."""
    from sklearn.metrics import f1_score
    flat, owners = predictor.window_ids(texts)
    probabilities = predictor.forward_sorted(flat)
    scores = {}
    for pooling in WINDOW_POOLINGS:
        pooled = windows.pool(probabilities, owners, len(texts), pooling)
        predicted = [predictor.labels[i] for i in pooled.argmax(axis=1)]
        scores[pooling] = (sum(p == t for p, t in zip(predicted, labels)) / float(len(labels)),
                           f1_score(labels, predicted, labels=predictor.labels, average="macro", zero_division=0))
    return scores


def other_poolings(predictor, texts, labels):
    """Table rows for the windows pooled otherwise than the export does (same model, same windows)."""
    return ["| windows, %s pooling (same model) | %.2f%% | %.4f | | | | |" % (pooling, 100 * accuracy, macro_f1)
            for pooling, (accuracy, macro_f1) in accuracy_by_pooling(predictor, texts, labels).items()
            if pooling != predictor.config.window_pooling]


def truncations(value):
    chosen = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in TRUNCATIONS]
    if unknown or not chosen:
        raise ArgumentTypeError("choose from %s, comma-separated (got %r)" % (",".join(TRUNCATIONS), value))
    return [name for name in TRUNCATIONS if name in chosen]


def suffix_name(value):
    if value and not re.match(r"^[a-z0-9][a-z0-9-]*$", value):  # "": the recipe's own file
        raise ArgumentTypeError("lower-case letters, digits and '-' (got %r)" % value)
    return value


def comparisons(accuracy, baseline):
    """The targets' lines for what was trained: windows against head+tail and the TF-IDF baseline."""
    if "windows" not in accuracy:
        return []
    against = ["windows - TF-IDF: %+.2f points (target >= 0)" % (100 * (accuracy["windows"] - baseline))]
    if "head+tail" in accuracy:
        against.insert(0, "windows - head+tail: %+.2f points (target >= +3)"
                       % (100 * (accuracy["windows"] - accuracy["head+tail"])))
    return ["; ".join(against)]


def report_of(export_dir):
    with open(os.path.join(os.path.dirname(os.path.dirname(export_dir)), "report", "metrics.json")) as handle:
        return json.load(handle)


def parse_args(own):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--train-per-group", type=positive_int, default=100, help="training posts per group")
    parser.add_argument("--seed", type=int, default=0, help="which training posts")
    parser.add_argument("--work-dir", default=None, help="keep the files here (default: a temp folder)")
    parser.add_argument("--python", default=sys.executable, help="the trainer's Python")
    parser.add_argument("--truncations", type=truncations, default=TRUNCATIONS,
                        help="which of head,head+tail,windows to train (comma-separated; default all)")
    parser.add_argument("--suffix", default="", type=suffix_name,
                        help="results file docs/bench/long_texts-<cpu>-tf<v>-SUFFIX.md (for a variant)")
    return parser.parse_args(own)


def flags_for(truncate, trainer_flags):
    """The trainer flags of one run: the window flags only where it cuts windows."""
    if truncate == "windows":
        return trainer_flags + ["--truncate", truncate]
    kept = [group for group in flag_groups(trainer_flags) if group[0] not in WINDOW_FLAGS]
    return [token for group in kept for token in group] + ["--truncate", truncate]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    own, trainer_flags = split_trainer_flags(argv)
    args = parse_args(own)

    def run():
        runs = {truncate: flags_for(truncate, trainer_flags) for truncate in args.truncations}
        check_tool_flags("long_texts", trainer_flags, {"--truncate": "choose the runs with its --truncations"},
                         runs.values())
        work = args.work_dir or tempfile.mkdtemp(prefix="long-texts-")
        data = long_text_split(work, args.train_per_group, args.seed)
        n_train = len(read_rows(os.path.join(data, "train.csv")))
        test_rows = read_rows(os.path.join(data, "test.csv"))
        test_texts, test_labels = [row["post"] for row in test_rows], [row["tags"] for row in test_rows]
        lines = ["| --truncate | test accuracy | macro-F1 | train examples/s | train documents/s | windows per "
                 "document | test documents/s |", "|---|---|---|---|---|---|---|"]
        accuracy, baseline = {}, None
        for truncate in args.truncations:
            run_dir = os.path.join(work, truncate.replace("+", "-"))
            export_dir = train(run_dir, data, runs[truncate], args.python)
            metrics = report_of(export_dir)
            with open(os.path.join(run_dir, "train.log"), encoding="utf-8") as handle:
                examples_per_s, documents_per_s, per_document = training_speed(handle.read())
            accuracy[truncate], baseline = metrics["accuracy"], metrics["tfidf_svm_accuracy"]
            predictor = Predictor(export_dir, backend="tf")
            try:
                lines.append("| %s | %.2f%% | %.4f | %.1f | %.1f | %.2f | %.1f |" % (
                    truncate, 100 * metrics["accuracy"], metrics["macro_f1"], examples_per_s, documents_per_s,
                    per_document, test_speed(predictor, test_texts)))
                if truncate == "windows" and not predictor.multi_label:  # its table is single-label
                    lines += other_poolings(predictor, test_texts, test_labels)
            finally:
                predictor.close()
        lines.append("| TF-IDF + linear SVM | %.2f%% | | | | | |" % (100 * baseline))
        lines += [""] + comparisons(accuracy, baseline)
        n_val = len(read_rows(os.path.join(data, "val.csv")))
        header = ("20 Newsgroups without its group names: %d training posts (%d a group), %d validation, %d test;"
                  " trainer flags: %s (window flags: the windows run only)"
                  % (n_train, args.train_per_group, n_val, len(test_texts), " ".join(trainer_flags)))
        publish("long_texts", header, lines, args.suffix)
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
