"""The export's ONNX copy: converted from the SavedModel with tf2onnx, verified against it, recorded.

    python -m bert_in_a_flask.training.onnx_export --model-dir models/trained_model   (make onnx)

The trainer converts its best export when training ends; this command converts an older export.
The file is written under a temp name, checked on real texts (the validation split, topped up to
MIN_TEXTS with random word-piece sequences; or --texts-file) through both the SavedModel and
onnxruntime, and only then renamed to <export>/model.onnx; its sha256 and the agreement (max
|Δprobability|, label agreement) go into model_config.json's `onnx` record. A file that disagrees
beyond MAX_ABS_DIFF is deleted and recorded as rejected, so it is never served. A failed
conversion logs one line; the SavedModel export is never touched.
"""
import csv
import dataclasses
import logging
import os
import random
import subprocess
import sys

import numpy as np

from ..shared.cli import ArgumentParser, positive_int
from ..shared.errors import UserError, run_cli
from ..shared.export_contract import (ASSETS_EXTRA, MODEL_CONFIG_FILE, ONNX_FILE, SIGNATURE_INPUTS, SIGNATURE_OUTPUT,
                                      read_assets, resolve_export)
from ..shared.files import file_sha256

log = logging.getLogger(__name__)

MAX_ABS_DIFF = 1e-4   # the most a probability may differ between the SavedModel and the ONNX file
MIN_TEXTS = 500       # inputs the verification runs through both
OPSET = 13            # understood by onnxruntime 1.10 (the newest for TF 1.15's numpy) and later


def convert(export_dir, texts=(), seed=0):
    """Convert and verify one export; returns its new `onnx` record (None when conversion failed)."""
    from ..serving.backends import OnnxBackend
    from ..serving.predictor import Predictor

    export_dir = resolve_export(export_dir)
    tmp = os.path.join(export_dir, "%s.tmp-%d" % (ONNX_FILE, os.getpid()))
    try:
        converter = tf2onnx_version()
        if converter is None:
            log.warning("onnx: tf2onnx is not installed; %s is served with TensorFlow", export_dir)
            return None
        error = run_tf2onnx(export_dir, tmp)
        if error:
            log.warning("onnx: conversion of %s failed (%s); the SavedModel is unchanged", export_dir, error)
            return None
        reference = Predictor(export_dir, backend="tf")
        id_lists, verified_on = verification_inputs(reference, texts, seed)
        expected = reference.forward_sorted(id_lists)
        reference.close()  # the TF session is done; free it before onnxruntime loads the copy
        reference.backend = OnnxBackend(tmp)  # the same batching, padding and order, on onnxruntime
        got = reference.forward_sorted(id_lists)
        reference.close()
        record = {
            "file": ONNX_FILE, "sha256": file_sha256(tmp), "opset": OPSET, "converter": "tf2onnx " + converter,
            "n_texts": len(id_lists), "verified_on": verified_on,
            "max_abs_diff": float(np.abs(got - expected).max()),
            "label_agreement": float((got.argmax(axis=1) == expected.argmax(axis=1)).mean()),
        }
        record["verified"] = record["max_abs_diff"] <= MAX_ABS_DIFF
        if record["verified"]:
            os.replace(tmp, os.path.join(export_dir, ONNX_FILE))
        else:
            log.warning("onnx: %s disagrees with the SavedModel (max |dp| %.2g > %g); not kept",
                        export_dir, record["max_abs_diff"], MAX_ABS_DIFF)
        write_record(export_dir, record)
        log.info("onnx: %s/%s %s: max |dp| %.2g, labels agree on %.2f%% of %d inputs (%s)", export_dir, ONNX_FILE,
                 "verified" if record["verified"] else "rejected", record["max_abs_diff"],
                 100 * record["label_agreement"], record["n_texts"], verified_on)
        return record
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def tf2onnx_version():
    try:
        import tf2onnx
    except ImportError:
        return None
    return tf2onnx.__version__


def run_tf2onnx(export_dir, output):
    """tf2onnx in its own process (it imports and rewrites TF graphs; keep that out of ours).
    Returns None, or the last line it printed when it failed."""
    command = [sys.executable, "-m", "bert_in_a_flask.training.onnx_export", "--tf2onnx-in-this-process",
               export_dir, output]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if result.returncode == 0 and os.path.isfile(output):
        return None
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "exit code %d" % result.returncode


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
    import tf2onnx
    graph_def, inputs, outputs = frozen_serving_default(export_dir)
    tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs, opset=OPSET,
                                   output_path=output)


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


def read_texts(path, column):
    if not os.path.isfile(path):
        raise UserError("texts file not found: %s" % path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if path.endswith((".tsv", ".tab")) else ",")
        if column not in (reader.fieldnames or []):
            raise UserError("%s has no column %r (columns: %s)" % (path, column, ", ".join(reader.fieldnames or [])))
        return [row[column] or "" for row in reader]


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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    def convert_one():
        texts = read_texts(args.texts_file, args.text_column)[:args.max_texts] if args.texts_file else []
        record = convert(args.model_dir, texts)
        if record is None or not record["verified"]:
            raise UserError("no verified ONNX file for %s (see the lines above)" % resolve_export(args.model_dir))

    return run_cli(convert_one)


if __name__ == "__main__":
    sys.exit(main())
