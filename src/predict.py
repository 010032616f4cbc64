"""Classify a CSV/TSV of texts with an exported model, streaming it in chunks.

    python src/predict.py --model models/trained_model --input in.csv --text-column post --output out.csv

The output has the text, the predicted label, its probability and one `prob:<label>` column per label.
"""
import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from errors import UserError, run_cli  # noqa: E402
from settings import DEFAULTS  # noqa: E402

csv.field_size_limit(2 ** 31 - 1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/trained_model", help="an export, or a folder of them (newest)")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--text-column", default="post")
    parser.add_argument("--sep", default=None, help="field separator (default: tab for .tsv, else comma)")
    parser.add_argument("--chunk-size", type=int, default=1024, help="rows read and classified at a time")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULTS["MAX_BATCH_SIZE"],
                        help="texts per forward pass")
    parser.add_argument("--no-progress", action="store_true")
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


def run(args):
    from predictor import Predictor
    from tqdm import tqdm

    if not os.path.isfile(args.input):
        raise UserError("input file not found: %s" % args.input)
    sep = args.sep or ("\t" if args.input.endswith((".tsv", ".tab")) else ",")
    predictor = Predictor.from_export(args.model, max_batch_size=args.max_batch_size)
    with open(args.input, newline="", encoding="utf-8") as source, \
            open(args.output + ".tmp", "w", newline="", encoding="utf-8") as sink:
        reader = csv.DictReader(source, delimiter=sep)
        if args.text_column not in (reader.fieldnames or []):
            raise UserError("%s has no column %r (columns: %s)"
                            % (args.input, args.text_column, ", ".join(reader.fieldnames or [])))
        writer = csv.writer(sink, delimiter=sep)
        writer.writerow([args.text_column, "prediction", "prediction_prob"] + ["prob:" + l for l in predictor.labels])
        progress = tqdm(unit=" texts", disable=args.no_progress, file=sys.stderr)
        for chunk in chunks(reader, args.chunk_size):
            texts = [row[args.text_column] or "" for row in chunk]
            probabilities = predictor.predict_proba(texts)
            for text, probs in zip(texts, probabilities):
                best = int(probs.argmax())
                writer.writerow([text, predictor.labels[best], "%.6f" % probs[best]] + ["%.6f" % p for p in probs])
            progress.update(len(texts))
        progress.close()
    os.replace(args.output + ".tmp", args.output)
    print("wrote %d predictions to %s" % (progress.n, args.output), file=sys.stderr)


def main(argv=None):
    return run_cli(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
