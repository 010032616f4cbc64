"""The export's ONNX copy: converted from the SavedModel with tf2onnx, verified against it, recorded.

    python -m bert_in_a_flask.training.onnx_export --model-dir models/trained_model   (make onnx)

The trainer converts its best export when training ends; this command converts an older export.
The steps live apart: the conversion in its own process (onnx_convert.py, which also fuses
LayerNorms, GELUs and attention blocks into onnxruntime's kernels: onnx_fusion.py), the check
(onnx_verify.py), the int8 copy (onnx_quantize.py) and the record (onnx_record.py); this module
runs them in order and is the command line.

The file is written under a temp name, checked on real texts (the validation split, topped up
with random word-piece sequences; or --texts-file) through both the SavedModel and onnxruntime,
and only then renamed to <export>/model.onnx; its sha256 and the agreement (max |Δprobability|,
label agreement) go into model_config.json's `onnx` record. A file that disagrees beyond
onnx_verify.MAX_ABS_DIFF is deleted and recorded as rejected, so it is never served. A failed
conversion logs one line; the SavedModel export is never touched.

With `--quantize int8` (trainer: `--quantize int8`), the verified file is also quantized dynamically
(onnxruntime: int8 weights, activations quantized per batch) to <export>/model.int8.onnx, which is
kept only when its accuracy on the labelled validation texts is within onnx_quantize's limit in points
of the fp32 file's; the record (`onnx.int8`) says which. Serving uses it only with QUANTIZE=int8.
"""
import csv
import logging
import os
import sys

from ..serving.predictor import Predictor
from ..shared.cli import ArgumentParser, positive_int
from ..shared.errors import UserError, run_cli
from ..shared.export_contract import ONNX_FILE, resolve_export
from ..shared.files import file_sha256
from . import onnx_verify
from .onnx_convert import OPSET, start_tf2onnx, stop_tf2onnx, tf2onnx_version, wait_for_tf2onnx
from .onnx_quantize import MAX_INT8_ACCURACY_DROP, QUANTIZATIONS, quantize_int8
from .onnx_record import write_record

log = logging.getLogger(__name__)


def convert(export_dir, texts=(), seed=0, labels=None, quantize="none"):
    """Convert and verify one export; returns its new `onnx` record (None when conversion failed).
    `quantize="int8"` also writes the int8 copy, judged on `texts` against their `labels`."""
    return Conversion(export_dir).finish(texts, seed=seed, labels=labels, quantize=quantize)  # finish cleans up


class Conversion(object):
    """One export's conversion: tf2onnx starts in its own process at once (half a minute, mostly
    one core), so the caller can do other work meanwhile; `finish` verifies and records the file."""

    def __init__(self, export_dir):
        self.export_dir = resolve_export(export_dir)
        self.tmp = os.path.join(self.export_dir, "%s.tmp-%d" % (ONNX_FILE, os.getpid()))
        self.converter = tf2onnx_version()
        self.process = None if self.converter is None else start_tf2onnx(self.export_dir, self.tmp)

    def finish(self, texts=(), seed=0, labels=None, quantize="none"):
        """The `onnx` record (None when conversion failed), after the file was checked against the
        SavedModel on `texts` and kept or deleted."""
        export_dir, tmp = self.export_dir, self.tmp
        try:
            if self.process is None:
                log.warning("onnx: tf2onnx is not installed; %s is served with TensorFlow", export_dir)
                return None
            # The SavedModel's answers first: they run while tf2onnx is still converting.
            reference = Predictor(export_dir, backend="tf")
            id_lists, verified_on = onnx_verify.verification_inputs(reference, texts, seed)
            expected = reference.forward_sorted(id_lists)
            reference.close()  # the TF session is done; free it before onnxruntime loads the copy
            error, fused = wait_for_tf2onnx(self.process, tmp)
            if error:
                log.warning("onnx: conversion of %s failed (%s); the SavedModel is unchanged", export_dir, error)
                return None
            record = dict({"file": ONNX_FILE, "sha256": file_sha256(tmp), "opset": OPSET,
                           "converter": "tf2onnx " + self.converter, "fused": fused, "verified_on": verified_on},
                          **onnx_verify.agreement(expected, self.candidate_probabilities(id_lists)))
            if record["verified"]:
                os.replace(tmp, os.path.join(export_dir, ONNX_FILE))
                if quantize == "int8":
                    record["int8"] = quantize_int8(export_dir, texts, labels)
            else:
                log.warning("onnx: %s disagrees with the SavedModel (max |dp| %.2g > %g); not kept",
                            export_dir, record["max_abs_diff"], onnx_verify.MAX_ABS_DIFF)
            write_record(export_dir, record)
            log.info("onnx: %s/%s %s: max |dp| %.2g, labels agree on %.2f%% of %d inputs (%s)", export_dir,
                     ONNX_FILE, "verified" if record["verified"] else "rejected", record["max_abs_diff"],
                     100 * record["label_agreement"], record["n_texts"], verified_on)
            return record
        finally:
            self.cancel()

    def candidate_probabilities(self, id_lists):
        """The unverified file's probabilities on `id_lists`, through the Predictor's batching."""
        candidate = Predictor(self.export_dir, onnx_file=self.tmp)
        try:
            return candidate.forward_sorted(id_lists)
        finally:
            candidate.close()

    def cancel(self):
        """Stop tf2onnx if it still runs and delete the unverified file (after finish: nothing left)."""
        if self.process is not None:
            stop_tf2onnx(self.process)
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def read_texts(path, column, label_column=None):
    """The texts of `column` (and the labels of `label_column`, when given: (texts, labels))."""
    if not os.path.isfile(path):
        raise UserError("texts file not found: %s" % path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.endswith((".tsv", ".tab")) else ",")
        for wanted in (column, label_column):
            if wanted is not None and wanted not in (reader.fieldnames or []):
                raise UserError("%s has no column %r (columns: %s)"
                                % (path, wanted, ", ".join(reader.fieldnames or [])))
        rows = list(reader)
    texts = [row[column] or "" for row in rows]
    return texts if label_column is None else (texts, [(row[label_column] or "").strip() for row in rows])


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", default="models/trained_model", help="an export, or a folder of them (newest)")
    parser.add_argument("--texts-file", default=None, help="CSV/TSV whose texts verify the conversion")
    parser.add_argument("--text-column", default="post", help="column of --texts-file with the texts")
    parser.add_argument("--max-texts", type=positive_int, default=2000, help="texts of --texts-file used at most")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, default="none",
                        help="also write model.int8.onnx, kept if its accuracy on --texts-file (labelled by "
                             "--label-column) is within %g points of fp32's" % MAX_INT8_ACCURACY_DROP)
    parser.add_argument("--label-column", default="tags", help="column of --texts-file with the labels (--quantize)")
    args = parser.parse_args(argv)
    if args.quantize == "int8" and not args.texts_file:
        parser.error("--quantize int8 needs --texts-file with labelled texts (e.g. the validation split)")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    def convert_one():
        texts, labels = [], None
        if args.texts_file and args.quantize == "int8":
            texts, labels = read_texts(args.texts_file, args.text_column, args.label_column)
            texts, labels = texts[:args.max_texts], labels[:args.max_texts]
        elif args.texts_file:
            texts = read_texts(args.texts_file, args.text_column)[:args.max_texts]
        record = convert(args.model_dir, texts, labels=labels, quantize=args.quantize)
        if record is None or not record["verified"]:
            raise UserError("no verified ONNX file for %s (see the lines above)" % resolve_export(args.model_dir))
        if args.quantize == "int8" and not record["int8"]["accepted"]:
            raise UserError("the int8 copy lost %.2f accuracy points (> %g); not kept, QUANTIZE=int8 will refuse it"
                            % (record["int8"]["accuracy_drop_points"], MAX_INT8_ACCURACY_DROP))

    return run_cli(convert_one)


if __name__ == "__main__":
    sys.exit(main())
