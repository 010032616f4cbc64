"""The export's ONNX copy: converted from the SavedModel with tf2onnx, verified against it, recorded.

    python -m bert_in_a_flask.training.onnx_export --model-dir models/trained_model   (make onnx)

The trainer converts its best export when training ends; this command converts an older export.
tf2onnx's LayerNorms, GELUs and attention blocks are then fused into onnxruntime's kernels
(onnx_fusion.py; the counts go into the record). The file is written under a temp name, checked on real texts (the
validation split, topped up to MIN_TEXTS with random word-piece sequences; or --texts-file) through
both the SavedModel and onnxruntime, and only then renamed to <export>/model.onnx; its sha256 and
the agreement (max |Δprobability|, label agreement) go into model_config.json's `onnx` record. A
file that disagrees beyond MAX_ABS_DIFF is deleted and recorded as rejected, so it is never served.
A failed conversion logs one line; the SavedModel export is never touched.

With `--quantize int8` (trainer: `--quantize int8`), the verified file is also quantized dynamically
(onnxruntime: int8 weights, activations quantized per batch) to <export>/model.int8.onnx, which is
kept only when its accuracy on the labelled validation texts is within MAX_INT8_ACCURACY_DROP points
of the fp32 file's; the record (`onnx.int8`) says which. Serving uses it only with QUANTIZE=int8.
"""
import contextlib
import csv
import dataclasses
import json
import logging
import os
import random
import subprocess
import sys
import tempfile

import numpy as np

from ..shared.cli import ArgumentParser, positive_int
from ..shared.errors import UserError, run_cli
from ..shared.export_contract import (ASSETS_EXTRA, MODEL_CONFIG_FILE, ONNX_FILE, ONNX_INT8_FILE, SIGNATURE_INPUTS,
                                      SIGNATURE_OUTPUT, read_assets, resolve_export)
from ..shared.files import file_sha256

log = logging.getLogger(__name__)

MAX_ABS_DIFF = 1e-4   # the most a probability may differ between the SavedModel and the ONNX file
MIN_TEXTS = 500       # inputs the verification runs through both
MAX_INT8_ACCURACY_DROP = 0.5  # points of validation accuracy int8 may lose against fp32
QUANTIZATIONS = ("none", "int8")
OPSET = 13            # understood by onnxruntime 1.10 (the newest for TF 1.15's numpy) and later
FUSED_PREFIX = "fused: "  # the converting process's line with the fused ops' counts


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
        from ..serving.backends import OnnxBackend
        from ..serving.predictor import Predictor

        export_dir, tmp = self.export_dir, self.tmp
        try:
            if self.process is None:
                log.warning("onnx: tf2onnx is not installed; %s is served with TensorFlow", export_dir)
                return None
            # The SavedModel's answers first: they run while tf2onnx is still converting.
            reference = Predictor(export_dir, backend="tf")
            id_lists, verified_on = verification_inputs(reference, texts, seed)
            expected = reference.forward_sorted(id_lists)
            reference.close()  # the TF session is done; free it before onnxruntime loads the copy
            error, fused = wait_for_tf2onnx(self.process, tmp)
            if error:
                log.warning("onnx: conversion of %s failed (%s); the SavedModel is unchanged", export_dir, error)
                return None
            reference.backend = OnnxBackend(tmp)  # the same batching, padding and order, on onnxruntime
            got = reference.forward_sorted(id_lists)
            reference.close()
            record = {
                "file": ONNX_FILE, "sha256": file_sha256(tmp), "opset": OPSET, "converter": "tf2onnx " + self.converter,
                "fused": fused,
                "n_texts": len(id_lists), "verified_on": verified_on,
                "max_abs_diff": float(np.abs(got - expected).max()),
                "label_agreement": float((got.argmax(axis=1) == expected.argmax(axis=1)).mean()),
            }
            record["verified"] = record["max_abs_diff"] <= MAX_ABS_DIFF
            if record["verified"]:
                os.replace(tmp, os.path.join(export_dir, ONNX_FILE))
                if quantize == "int8":
                    record["int8"] = quantize_int8(export_dir, reference, texts, labels)
            else:
                log.warning("onnx: %s disagrees with the SavedModel (max |dp| %.2g > %g); not kept",
                            export_dir, record["max_abs_diff"], MAX_ABS_DIFF)
            write_record(export_dir, record)
            log.info("onnx: %s/%s %s: max |dp| %.2g, labels agree on %.2f%% of %d inputs (%s)", export_dir,
                     ONNX_FILE, "verified" if record["verified"] else "rejected", record["max_abs_diff"],
                     100 * record["label_agreement"], record["n_texts"], verified_on)
            return record
        finally:
            self.cancel()

    def cancel(self):
        """Stop tf2onnx if it still runs and delete the unverified file (after finish: nothing left)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.process.printed.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def quantize_int8(export_dir, predictor, texts, labels):
    """model.int8.onnx from the verified model.onnx, kept when its accuracy on the labelled texts is
    within MAX_INT8_ACCURACY_DROP points of fp32's. Returns the `int8` record."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ..serving.backends import OnnxBackend

    if not texts or labels is None or len(labels) != len(texts):
        raise UserError("--quantize int8 needs labelled texts to judge accuracy by (the validation split)")
    fp32, final = os.path.join(export_dir, ONNX_FILE), os.path.join(export_dir, ONNX_INT8_FILE)
    tmp = "%s.tmp-%d" % (final, os.getpid())
    try:
        # ONNX's shape inference does not know the fused kernels (onnx_fusion.py), so the quantizer is
        # told the type it cannot infer (the tensors it asks about are float32 activations), and its
        # root-logger warning for each such tensor (~100) is held back.
        with root_log_level(logging.ERROR):
            quantize_dynamic(fp32, tmp, weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": TensorProto.FLOAT})
        id_lists = predictor.preprocess(list(texts))
        accuracy = {}
        for name, path in (("fp32", fp32), ("int8", tmp)):
            predictor.backend = OnnxBackend(path)
            predicted = predictor.forward_sorted(id_lists).argmax(axis=1)
            accuracy[name] = float(np.mean([predictor.labels[i] == label for i, label in zip(predicted, labels)]))
            predictor.close()
        drop = 100 * (accuracy["fp32"] - accuracy["int8"])
        record = {"file": ONNX_INT8_FILE, "sha256": file_sha256(tmp), "n_texts": len(texts),
                  "fp32_accuracy": accuracy["fp32"], "int8_accuracy": accuracy["int8"],
                  "accuracy_drop_points": drop, "max_drop_points": MAX_INT8_ACCURACY_DROP,
                  "accepted": drop <= MAX_INT8_ACCURACY_DROP}
        if record["accepted"]:
            os.replace(tmp, final)
        log.info("onnx: %s/%s %s: accuracy %.2f%% (fp32 %.2f%%) on %d labelled texts", export_dir, ONNX_INT8_FILE,
                 "accepted" if record["accepted"] else "rejected (drop > %g points)" % MAX_INT8_ACCURACY_DROP,
                 100 * accuracy["int8"], 100 * accuracy["fp32"], len(texts))
        return record
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def root_log_level(level):
    root = logging.getLogger()
    before = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(before)


def tf2onnx_version():
    try:
        import tf2onnx
    except ImportError:
        return None
    return tf2onnx.__version__


def tf2onnx_command(export_dir, output):
    return [sys.executable, "-m", "bert_in_a_flask.training.onnx_export", "--tf2onnx-in-this-process",
            export_dir, output]


def start_tf2onnx(export_dir, output):
    """tf2onnx in its own process (it imports and rewrites TF graphs; keep that out of ours)."""
    command = tf2onnx_command(export_dir, output)
    printed = tempfile.TemporaryFile(mode="w+")  # not a pipe: nobody reads it until the process ends
    process = subprocess.Popen(command, stdout=printed, stderr=subprocess.STDOUT, universal_newlines=True)
    process.printed = printed
    return process


def wait_for_tf2onnx(process, output):
    """(None, the fused ops' counts) once `output` is written, or (the last line printed, None) when
    the conversion failed."""
    process.wait()
    with process.printed:
        process.printed.seek(0)
        lines = [line for line in process.printed.read().splitlines() if line.strip()]
    if process.returncode == 0 and os.path.isfile(output):
        fused = [line[len(FUSED_PREFIX):] for line in lines if line.startswith(FUSED_PREFIX)]
        return None, json.loads(fused[-1]) if fused else {}
    return (lines[-1].strip() if lines else "exit code %d" % process.returncode), None


def frozen_serving_default(export_dir):
    """serving_default as one GraphDef with the weights as constants and its inputs as plain placeholders:
    (graph_def, input tensor names, output tensor names). The ids inputs are PlaceholderWithDefault ops
    whose defaults are serve_text's tokenizer; made Placeholders, that part falls out of the graph."""
    from ..serving.backends import register_text_ops
    from ..shared.tf_compat import tf

    register_text_ops()  # the SavedModel holds serve_text's tensorflow-text ops
    with tf.Graph().as_default() as graph, tf.Session(graph=graph) as session:
        meta = tf.saved_model.loader.load(session, ["serve"], export_dir)
        signature = meta.signature_def["serving_default"]
        inputs = [signature.inputs[name].name for name in SIGNATURE_INPUTS]
        outputs = [signature.outputs[SIGNATURE_OUTPUT].name]
        graph_def = tf.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), [name.split(":")[0] for name in outputs])
    input_ops = {name.split(":")[0] for name in inputs}
    for node in graph_def.node:
        if node.name in input_ops and node.op == "PlaceholderWithDefault":
            node.op = "Placeholder"  # same dtype and shape attributes
            del node.input[:]
    graph_def = tf.graph_util.extract_sub_graph(graph_def, [name.split(":")[0] for name in outputs])
    return graph_def, inputs, outputs


def tf2onnx_in_this_process(export_dir, output):
    """Convert, then fuse LayerNorm, GELU and attention into onnxruntime's kernels (onnx_fusion.py); prints the
    counts."""
    import tf2onnx

    from .onnx_fusion import fuse_file
    graph_def, inputs, outputs = frozen_serving_default(export_dir)
    tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs, opset=OPSET,
                                   output_path=output)
    print(FUSED_PREFIX + json.dumps(fuse_file(output), sort_keys=True), flush=True)


def verification_inputs(predictor, texts, seed):
    """Word-piece id lists: the texts encoded as served, topped up with random sequences."""
    id_lists = predictor.preprocess(list(texts))
    missing = MIN_TEXTS - len(id_lists)
    if missing > 0:
        rng = random.Random(seed)
        vocab_size = len(predictor.encoder.tokenizer.vocab)
        cls_id, sep_id = predictor.encoder.tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])
        for _ in range(missing):
            length = rng.randint(1, predictor.encoder.max_seq_length - 2)
            id_lists.append([cls_id] + [rng.randrange(5, vocab_size) for _ in range(length)] + [sep_id])
    described = "%d texts" % len(texts) if texts else "no texts"
    return id_lists, described + (" + %d random word-piece sequences" % missing if missing > 0 else "")


def write_record(export_dir, record):
    """Put the `onnx` record into the export's model_config.json (atomically)."""
    _, _, config = read_assets(export_dir)
    dataclasses.replace(config, onnx=record).write(os.path.join(export_dir, ASSETS_EXTRA, MODEL_CONFIG_FILE))


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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--tf2onnx-in-this-process"]:  # run_tf2onnx's subprocess
        tf2onnx_in_this_process(*argv[1:])
        return 0
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
