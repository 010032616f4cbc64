"""`make multilabel`: several labels per text, measured. No multi-label set ships in the offline packages,
so one is built from the SO titles, honestly: within each split (train, val, test apart, so the test
split is never seen by training or by the threshold tuning), the titles are shuffled and taken in turn,
each once; with probability --pair-share a title is joined with the next title of a *different* tag
into one text labelled with both tags ("java|python"), so that share of the texts are pairs; the rest
stay single titles with their one tag. The
Makefile's recipe is trained on it with --label-separator '|', and the report's test figures are printed:
micro-F1 at the tuned thresholds and at a fixed 0.5, against TF-IDF + one-vs-rest linear SVMs on the
same split (docs/bench/multilabel-<cpu>-tf<v>.md).

    python -m bert_in_a_flask.tools.multilabel [--pair-share 0.5] -- TRAINER FLAGS
"""
import json
import os
import random
import sys
import tempfile

from . import download_data
from ..shared.cli import ArgumentParser, share
from ..shared.errors import run_cli
from .bench_results import check_tool_flags, publish, split_trainer_flags
from .ood import read_rows, train, write_rows

SEPARATOR = "|"


def paired_rows(rows, pair_share, rng):
    """Each title once: alone with its tag, or (with probability `pair_share`) joined with the next
    title of another tag, labelled with both."""
    pending = list(rows)
    rng.shuffle(pending)
    built = []
    while pending:
        first = pending.pop()
        partner = None
        if rng.random() < pair_share:
            partner = next((i for i in range(len(pending) - 1, -1, -1) if pending[i]["tags"] != first["tags"]), None)
        if partner is None:
            built.append({"post": first["post"], "tags": first["tags"]})
            continue
        second = pending.pop(partner)
        built.append({"post": first["post"] + " " + second["post"],
                      "tags": SEPARATOR.join(sorted((first["tags"], second["tags"])))})
    return built


def multi_label_split(work, pair_share, seed):
    """The data folder of the multi-label SO titles (train.csv, val.csv, test.csv)."""
    source = os.path.join(work, "so")
    download_data.write_so_titles(source)
    folder = os.path.join(work, "multilabel")
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(seed)
    for name in ("train", "val", "test"):
        write_rows(paired_rows(read_rows(os.path.join(source, name + ".csv")), pair_share, rng),
                   os.path.join(folder, name + ".csv"))
    return folder


def report_of(export_dir):
    with open(os.path.join(os.path.dirname(os.path.dirname(export_dir)), "report", "metrics.json")) as handle:
        return json.load(handle)


def table(metrics):
    tuned, fixed, baseline = metrics, metrics["at_fixed_threshold"], metrics["tfidf_one_vs_rest"]
    lines = ["| test split | micro-F1 | macro-F1 | subset accuracy |", "|---|---|---|---|"]
    for name, scores in (("BERT, tuned thresholds (default)", tuned), ("BERT, fixed 0.5", fixed),
                         ("TF-IDF + one-vs-rest linear SVM", baseline)):
        lines.append("| %s | %.4f | %.4f | %.2f%% |" % (name, scores["micro_f1"], scores["macro_f1"],
                                                       100 * scores["subset_accuracy"]))
    lines += ["", "tuned - 0.5: %+.2f points micro-F1; tuned - TF-IDF: %+.2f points (targets: >= +1 and >= +3)" % (
        100 * (tuned["micro_f1"] - fixed["micro_f1"]), 100 * (tuned["micro_f1"] - baseline["micro_f1"]))]
    return lines


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    own, trainer_flags = split_trainer_flags(argv)
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--pair-share", type=share, default=0.5,
                        help="share of the texts that are two titles of different tags joined")
    parser.add_argument("--seed", type=int, default=0, help="which titles are joined")
    parser.add_argument("--work-dir", default=None, help="keep the files here (default: a temp folder)")
    parser.add_argument("--python", default=sys.executable, help="the trainer's Python")
    args = parser.parse_args(own)

    def run():
        flags = trainer_flags + ["--label-separator", SEPARATOR]
        check_tool_flags("multilabel", trainer_flags, {"--label-separator": "it joins the labels of its texts"},
                         [flags])
        work = args.work_dir or tempfile.mkdtemp(prefix="multilabel-")
        data = multi_label_split(work, args.pair_share, args.seed)
        export_dir = train(os.path.join(work, "train"), data, flags, args.python)
        metrics = report_of(export_dir)
        counts = metrics["counts"]
        header = ("SO titles, %g of the texts two titles of different tags joined (each split apart: %d train, %d val, "
                  "%d test texts; %.2f labels per test text)" % (args.pair_share, counts["train"], counts["val"],
                                                                 counts["test"], metrics["labels_per_text"]["true"]))
        publish("multilabel", header, table(metrics))
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
