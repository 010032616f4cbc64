"""tf2onnx's conversion of an export's serving_default, run in a process of its own (it imports and
rewrites TF graphs; the trainer's process keeps none of that), then fused into onnxruntime's kernels
(onnx_fusion.py). The counts of fused ops come back as one printed line.

    python -m bert_in_a_flask.training.onnx_convert EXPORT_DIR OUTPUT   (what start_tf2onnx runs)
"""
import json
import os
import subprocess
import sys
import tempfile

from ..shared.export_contract import SIGNATURE_INPUTS, SIGNATURE_OUTPUT

OPSET = 13            # understood by onnxruntime 1.10 (the newest for TF 1.15's numpy) and later
FUSED_PREFIX = "fused: "  # the converting process's line with the fused ops' counts


def tf2onnx_version():
    try:
        import tf2onnx
    except ImportError:
        return None
    return tf2onnx.__version__


def tf2onnx_command(export_dir, output):
    return [sys.executable, "-m", "bert_in_a_flask.training.onnx_convert", export_dir, output]


def start_tf2onnx(export_dir, output):
    """tf2onnx in its own process; its output goes to a temp file, read when it ends."""
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


def stop_tf2onnx(process):
    """Kill a conversion that still runs and close its output."""
    if process.poll() is None:
        process.kill()
        process.wait()
    process.printed.close()


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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.exit(__doc__)
    tf2onnx_in_this_process(*argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
