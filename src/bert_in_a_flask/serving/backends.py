"""Forward passes: the export's SavedModel on TensorFlow ("tf"), or its verified ONNX copy on
onnxruntime ("onnx"). Both take the serving signature's int32 [batch, length] ids, mask and
segments and return probabilities [batch, labels].

Which one serves (`BACKEND`, one default in settings.py):
    auto   onnx when onnxruntime is installed and the export's model.onnx was verified against the
           SavedModel when it was converted (and is still that file); else tf, with one warning
           saying why when the export has an ONNX record
    tf     always the SavedModel
    onnx   the ONNX file, or a refusal to start with one line saying why

`QUANTIZE=int8` (opt-in) serves the export's int8 copy (model.int8.onnx, kept at conversion only when
its validation accuracy stayed within 0.5 points of fp32's) with onnxruntime, or refuses to start
with one line: no accepted copy, a changed file, no onnxruntime, or BACKEND=tf.
"""
import logging
import os
import sys

from ..shared.errors import UserError
from ..shared.export_contract import ONNX_FILE, ONNX_INT8_FILE, SIGNATURE_INPUTS, SIGNATURE_OUTPUT
from ..shared.files import file_sha256

log = logging.getLogger(__name__)
BACKENDS = ("auto", "tf", "onnx")
QUANTIZATIONS = ("none", "int8")


def register_text_ops():
    """Import tensorflow-text, whose ops the export's serve_text signature holds: TensorFlow loads the
    whole graph, so even serving_default needs them registered. False when it is not installed."""
    try:
        import tensorflow_text  # noqa: F401
    except ImportError:
        return False
    return True


class TFBackend(object):
    name = "tf"

    def __init__(self, export_dir, intra_op_threads=0, inter_op_threads=0):
        if not tensorflow_installed():
            raise UserError("BACKEND=tf needs TensorFlow, which this environment lacks: install "
                            "requirements_api_tf.txt (or serve the export's verified ONNX file with BACKEND=auto)")
        from ..shared.tf_compat import session_config, tf  # only here: the onnx backends need no TensorFlow
        has_text_ops = register_text_ops()
        self._graph = tf.Graph()
        self._session = tf.Session(graph=self._graph, config=session_config(intra_op_threads, inter_op_threads))
        with self._graph.as_default():
            try:
                meta = tf.saved_model.loader.load(self._session, ["serve"], export_dir)
            except Exception as exc:  # TF raises many types for a corrupt SavedModel
                hint = ("" if has_text_ops
                        else " (its serve_text signature needs tensorflow-text: see requirements_api.txt)")
                raise UserError("cannot load SavedModel %s: %s%s" % (export_dir, str(exc).splitlines()[0], hint))
        signature = meta.signature_def.get("serving_default")
        if signature is None or SIGNATURE_OUTPUT not in signature.outputs:
            raise UserError("%s has no serving_default signature with %r" % (export_dir, SIGNATURE_OUTPUT))
        self._inputs = [signature.inputs[name].name for name in SIGNATURE_INPUTS]
        self._output = signature.outputs[SIGNATURE_OUTPUT].name
        self.n_outputs = self._graph.get_tensor_by_name(self._output).shape.as_list()[-1]

    def run(self, input_ids, input_mask, segment_ids):
        return self._session.run(self._output, dict(zip(self._inputs, (input_ids, input_mask, segment_ids))))

    def close(self):
        self._session.close()


class OnnxBackend(object):

    def __init__(self, path, intra_op_threads=0, inter_op_threads=0, name="onnx"):
        self.name = name
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads  # 0: one per core, as for TF
        options.inter_op_num_threads = inter_op_threads
        try:
            self._session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a bad file
            raise UserError("cannot load %s: %s" % (path, str(exc).splitlines()[0]))
        names = {arg.name.split(":")[0]: arg.name for arg in self._session.get_inputs()}
        if set(names) != set(SIGNATURE_INPUTS):
            raise UserError("%s takes %s, not the serving signature's %s"
                            % (path, ", ".join(sorted(names)), ", ".join(SIGNATURE_INPUTS)))
        self._inputs = [names[name] for name in SIGNATURE_INPUTS]
        output = self._session.get_outputs()[0]
        self._output = output.name
        self.n_outputs = output.shape[-1] if isinstance(output.shape[-1], int) else None

    def run(self, input_ids, input_mask, segment_ids):
        return self._session.run([self._output], dict(zip(self._inputs, (input_ids, input_mask, segment_ids))))[0]

    def close(self):
        self._session = None


def onnx_unusable(export_dir, record):
    """Why the export's ONNX file may not serve (None when it may)."""
    path = os.path.join(export_dir, ONNX_FILE)
    if not record:
        return "the export has no verified ONNX file (make onnx model_dir=%s converts it)" % export_dir
    if not record.get("verified"):
        return "its ONNX conversion disagreed with the SavedModel (max |dp| %s)" % record.get("max_abs_diff")
    return onnx_file_unusable(path, record.get("sha256"), "verified")


def onnx_file_unusable(path, sha256, checked_as):
    """Why the ONNX file at `path`, recorded with `sha256` when it was `checked_as`, may not serve."""
    if not os.path.isfile(path):
        return "%s is missing" % path
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "onnxruntime is not installed"
    if file_sha256(path) != sha256:
        return "%s is not the file that was %s (changed, corrupt or from another export)" % (path, checked_as)
    return None


def int8_unusable(export_dir, record):
    """Why the export's int8 copy may not serve (None when it may)."""
    int8 = (record or {}).get("int8")
    if not int8:
        return ("the export has no int8 copy (train with --quantize int8, or make onnx model_dir=%s "
                "args='--quantize int8 --texts-file data/.../val.csv')" % export_dir)
    if not int8.get("accepted"):
        return "its int8 copy lost %.2f validation accuracy points (more than %g) and was not kept" % (
            int8.get("accuracy_drop_points", float("nan")), int8.get("max_drop_points", float("nan")))
    return onnx_file_unusable(os.path.join(export_dir, ONNX_INT8_FILE), int8.get("sha256"), "accepted")


def open_backend(requested, export_dir, record, intra_op_threads=0, inter_op_threads=0, quantize="none"):
    """The backend to serve with, following BACKEND and QUANTIZE (see the module's docstring)."""
    if requested not in BACKENDS:
        raise UserError("BACKEND must be one of %s, not %r" % (", ".join(BACKENDS), requested))
    if quantize not in QUANTIZATIONS:
        raise UserError("QUANTIZE must be one of %s, not %r" % (", ".join(QUANTIZATIONS), quantize))
    if quantize == "int8":
        why = "BACKEND=tf serves the SavedModel" if requested == "tf" else int8_unusable(export_dir, record)
        if why is not None:
            raise UserError("QUANTIZE=int8, but %s" % why)
        return OnnxBackend(os.path.join(export_dir, ONNX_INT8_FILE), intra_op_threads, inter_op_threads,
                           name="onnx-int8")
    if requested != "tf":
        why = onnx_unusable(export_dir, record)
        if why is None:
            try:
                return OnnxBackend(os.path.join(export_dir, ONNX_FILE), intra_op_threads, inter_op_threads)
            except UserError as exc:
                why = str(exc)
        if requested == "onnx":
            raise UserError("BACKEND=onnx, but %s" % why)
        if not tensorflow_installed():
            raise UserError("%s cannot be served without TensorFlow, which this environment lacks: %s. Convert it "
                            "with `make onnx model_dir=%s`, or install requirements_api_tf.txt and set BACKEND=tf"
                            % (export_dir, why, export_dir))
        if record:  # an ONNX file was expected: say once why it is not used
            log.warning("serving %s with TensorFlow: %s", export_dir, why)
    return TFBackend(export_dir, intra_op_threads, inter_op_threads)


def tensorflow_installed():
    import importlib.util
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except ImportError:
        return False


def tf_version():
    """The version of the TensorFlow this process loaded, None when it loaded none (the onnx backends)."""
    return getattr(sys.modules.get("tensorflow"), "__version__", None)
