"""Classify a CSV/TSV of texts with an exported model, streaming it in chunks.

    python src/predict.py --model models/trained_model --input in.csv --text-column post --output out.csv

The output has the text, the predicted label, its probability and one `prob:<label>` column per label.
"""
import csv
import os
import sys

from ..shared.cli import ArgumentParser, positive_int
from ..shared.errors import UserError, run_cli
from .settings import DEFAULTS

csv.field_size_limit(2 ** 31 - 1)


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models/trained_model", help="an export, or a folder of them (newest)")
    parser.add_argument("--input", required=True, help="CSV/TSV with a text column")
    parser.add_argument("--output", required=True, help="CSV/TSV to write (replaced when complete)")
    parser.add_argument("--text-column", default="post", help="column with the texts")
    parser.add_argument("--sep", default=None, help="field separator (default: tab for .tsv, else comma)")
    parser.add_argument("--chunk-size", type=positive_int, default=1024, help="rows read and classified at a time")
    parser.add_argument("--max-batch-size", type=positive_int, default=DEFAULTS["MAX_BATCH_SIZE"],
                        help="texts per forward pass")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def chunks(rows, size):
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_output_path(path):
    """The output must be a file name in an existing, writable folder: checked before the model loads."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError("--output %s is a folder; give a file name such as %s" % (path, os.path.join(path, "out.csv")))
    if not os.path.isdir(folder):
        raise UserError("--output folder does not exist: %s" % folder)
    if not os.access(folder, os.W_OK):
        raise UserError("--output folder is not writable: %s" % folder)


def run(args):
    if not os.path.isfile(args.input):
        raise UserError("input file not found: %s" % args.input)
    check_output_path(args.output)
    sep = args.sep or ("\t" if args.input.endswith((".tsv", ".tab")) else ",")
    with open(args.input, newline="", encoding="utf-8") as source:
        columns = csv.DictReader(source, delimiter=sep).fieldnames or []
    if args.text_column not in columns:
        raise UserError("%s has no column %r (columns: %s)" % (args.input, args.text_column, ", ".join(columns)))

    from .predictor import Predictor
    predictor = Predictor(args.model, max_batch_size=args.max_batch_size)
    tmp = "%s.tmp-%d" % (args.output, os.getpid())
    try:
        written = classify_file(predictor, args, sep, tmp)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print("wrote %d predictions to %s" % (written, args.output), file=sys.stderr)


def classify_file(predictor, args, sep, path):
    """Stream the input through the predictor into `path`; returns the number of rows."""
    from tqdm import tqdm
    with open(args.input, newline="", encoding="utf-8") as source, \
            open(path, "w", newline="", encoding="utf-8") as sink:
        reader = csv.DictReader(source, delimiter=sep)
        writer = csv.writer(sink, delimiter=sep)
        writer.writerow([args.text_column, "prediction", "prediction_prob"]
                        + ["prob:" + label for label in predictor.labels])
        progress = tqdm(unit=" texts", disable=args.no_progress, file=sys.stderr)
        for chunk in chunks(reader, args.chunk_size):
            texts = [row[args.text_column] or "" for row in chunk]
            probabilities = predictor.predict_proba(texts)
            for text, probs, (label, prob) in zip(texts, probabilities, row_answers(predictor, probabilities)):
                writer.writerow([text, label, prob] + ["%.6f" % p for p in probs])
            progress.update(len(texts))
        progress.close()
    return progress.n


def row_answers(predictor, probabilities):
    """(prediction, prediction_prob) cells per text: the top label and its probability; a multi-label
    export's chosen labels joined by its separator, and their probabilities joined the same way."""
    if not predictor.multi_label:
        return [(predictor.labels[i], "%.6f" % p[i]) for p, i in zip(probabilities, probabilities.argmax(axis=1))]
    separator = predictor.config.label_separator
    return [(separator.join(predictor.labels[i] for i in row), separator.join("%.6f" % p[i] for i in row))
            for p, row in zip(probabilities, predictor.chosen_labels(probabilities))]


def main(argv=None):
    return run_cli(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
