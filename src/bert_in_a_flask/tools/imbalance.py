"""`make imbalance`: does --class-weights balanced help classes of very different sizes? SO titles with
a few tags (chosen with a seed) cut to 5 % of their training and validation titles, the test split
left whole; the demo's recipe trained twice, --class-weights none and balanced, and their test
accuracy, macro-F1 and worst class recall printed side by side (docs/bench/imbalance-<cpu>-tf<v>.md).

    python -m bert_in_a_flask.tools.imbalance [--rare 4] [--share 0.05] -- TRAINER FLAGS
"""
import json
import os
import random
import sys
import tempfile

from . import download_data
from ..shared.cli import ArgumentParser, positive_int, share
from ..shared.errors import UserError, run_cli
from .bench_results import check_tool_flags, publish, split_trainer_flags
from .ood import read_rows, train, write_rows

MODES = ("none", "balanced")


def imbalanced_split(work, n_rare, keep, seed):
    """(data folder, the rare tags): `n_rare` tags keep `keep` of their train and val titles."""
    source = os.path.join(work, "so")
    download_data.write_so_titles(source)
    splits = {name: read_rows(os.path.join(source, name + ".csv")) for name in ("train", "val", "test")}
    tags = sorted({row["tags"] for row in splits["train"]})
    if not 0 < n_rare < len(tags):
        raise UserError("--rare must be between 1 and %d" % (len(tags) - 1))
    rare = sorted(random.Random(seed).sample(tags, n_rare))
    rng = random.Random(seed)
    folder = os.path.join(work, "imbalanced")
    os.makedirs(folder, exist_ok=True)
    for name in ("train", "val"):
        rows = [row for row in splits[name] if row["tags"] not in rare or rng.random() < keep]
        write_rows(rows, os.path.join(folder, name + ".csv"))
    write_rows(splits["test"], os.path.join(folder, "test.csv"))
    return folder, rare


def report_of(export_dir):
    with open(os.path.join(os.path.dirname(os.path.dirname(export_dir)), "report", "metrics.json")) as handle:
        return json.load(handle)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    own, trainer_flags = split_trainer_flags(argv)
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--rare", type=positive_int, default=4, help="tags cut down (of 20)")
    parser.add_argument("--share", type=share, default=0.05, help="share of their train/val titles kept")
    parser.add_argument("--seed", type=int, default=0, help="which tags, which titles")
    parser.add_argument("--work-dir", default=None, help="keep the files here (default: a temp folder)")
    parser.add_argument("--python", default=sys.executable, help="the trainer's Python")
    args = parser.parse_args(own)

    def run():
        runs = {mode: trainer_flags + ["--class-weights", mode] for mode in MODES}
        check_tool_flags("imbalance", trainer_flags, {"--class-weights": "it trains with none and with balanced"},
                         runs.values())
        work = args.work_dir or tempfile.mkdtemp(prefix="imbalance-")
        data, rare = imbalanced_split(work, args.rare, args.share, args.seed)
        metrics = {}
        for mode in MODES:
            export_dir = train(os.path.join(work, mode), data, runs[mode], args.python)
            metrics[mode] = report_of(export_dir)
        lines = ["| --class-weights | test accuracy | macro-F1 | worst class recall | mean recall of the rare tags |",
                 "|---|---|---|---|---|"]
        for mode in MODES:
            m = metrics[mode]
            rare_recall = sum(m["per_class"][tag]["recall"] for tag in rare) / len(rare)
            lines.append("| %s | %.2f%% | %.4f | %.2f%% (%s) | %.2f%% |" % (
                mode, 100 * m["accuracy"], m["macro_f1"], 100 * m["worst_class_recall"]["recall"],
                m["worst_class_recall"]["label"], 100 * rare_recall))
        header = ("rare tags: %s, %g of their train/val titles kept (%d train titles in all); test split whole "
                  "(%d titles)" % (", ".join(rare), args.share, len(read_rows(os.path.join(data, "train.csv"))),
                                   metrics["none"]["n_examples"]))
        publish("imbalance", header, lines)
    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
