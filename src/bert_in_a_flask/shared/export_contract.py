"""The export directory: the one contract between training and serving.

    <export root>/<timestamp>/saved_model.pb, variables/      serving_default (ids) and serve_text (strings)
    <export root>/<timestamp>/assets.extra/labels.json         ordered label list
                                          vocab.txt           the tokenizer's vocab
                                          model_config.json   `ExportConfig`: how to tokenize + provenance

The trainer writes it (training/export.py); the predictor reads it and nothing else.
"""
import dataclasses
import glob
import os
import shutil
from typing import Any, Dict, Optional

from .errors import UserError
from .files import load_json, save_json
from .text import MIN_SEQ_LENGTH, TRUNCATIONS, WINDOW_LOSSES, WINDOW_POOLINGS

ASSETS_EXTRA = "assets.extra"
LABELS_FILE, VOCAB_FILE, MODEL_CONFIG_FILE = "labels.json", "vocab.txt", "model_config.json"
ONNX_FILE = "model.onnx"  # beside saved_model.pb: the same model for onnxruntime, verified on conversion
ONNX_INT8_FILE = "model.int8.onnx"  # its dynamic-int8 copy (opt-in), kept when accuracy holds
SIGNATURE_INPUTS = ("input_ids", "input_mask", "segment_ids")
SIGNATURE_OUTPUT = "probabilities"
# The raw-text signature: strings in (TEXT_INPUT), TEXT_OUTPUTS out; tokenized inside the graph.
TEXT_SIGNATURE, TEXT_INPUT = "serve_text", "text"
TEXT_OUTPUTS = ("probabilities", "label", "score", "accepted")  # accepted: score >= the export's floor
# A multi-label export's serve_text also answers `predicted` [batch, labels] (probability >= the label's
# threshold); its `label` is the chosen labels joined by the export's label_separator, `accepted` is
# true where any label was chosen.
MULTI_LABEL_TEXT_OUTPUTS = TEXT_OUTPUTS + ("predicted",)
# The graph's calibration scalars (model.py), set in the export by the trainer's calibration step.
CALIBRATION_SCOPE, TEMPERATURE_VARIABLE, MIN_CONFIDENCE_VARIABLE = "calibration", "temperature", "min_confidence"
WINDOW_TEXT = "window_text"  # the graph's feature: which text of serve_text's batch a window row is of
THRESHOLDS_VARIABLE = "thresholds"  # multi-label graphs only: one decision threshold per label
DEFAULT_THRESHOLD = 0.5  # a multi-label export's threshold for every label until calibrate.py tunes them
# Tensors of the exported graph no signature carries, named for tools/ood.py's energy and centroid scores.
LOGITS_TENSOR, POOLED_TENSOR = "logits:0", "pooled_features:0"
POOLINGS = ("cls", "mean")
# 0: exports written before model_config.json had a version (still loaded); 1: one label per text;
# 2: multi_label exports, which a reader of version 1 would take for softmax ones, so it refuses them.
FORMAT_VERSION = 2  # the newest this code reads and writes
SINGLE_LABEL_FORMAT_VERSION = 1  # what single-label exports are still written as: older readers serve them


@dataclasses.dataclass(frozen=True)
class ExportConfig(object):
    """`assets.extra/model_config.json`: what serving needs to encode texts exactly as in training,
    and where the model came from. Fields added later get defaults, so older exports still load."""

    max_seq_length: int
    do_lower_case: bool
    truncate: str = "head"
    pooling: str = "cls"
    base_model: str = "bert"
    num_labels: Optional[int] = None
    created: str = ""
    global_step: Optional[int] = None
    val_metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
    bert_config: Dict[str, Any] = dataclasses.field(default_factory=dict)
    data_file: str = ""
    data_sha256: str = ""
    tf_version: str = ""
    # The ONNX copy's record: sha256, opset, converter, and its agreement with the SavedModel
    # (verified, max_abs_diff, label_agreement, n_texts, verified_on). Empty: none.
    onnx: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # Temperature scaling, the confidence floor and the conformal quantiles fitted on the validation
    # split (training/calibrate.py): method, temperature, min_confidence (+ the share it keeps),
    # conformal {score, quantiles {level: q}}, and ECE/NLL before and after. Empty: uncalibrated.
    calibration: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # Several labels per text (--label-separator): sigmoid outputs, one threshold per label (in
    # `calibration`), and the separator the training data joined a row's labels with.
    multi_label: bool = False
    label_separator: str = ""
    # truncate "windows": a text is cut into windows of max_seq_length, window_stride pieces apart, at
    # most max_windows, and the answers for its windows are pooled (window_pooling) into the text's.
    window_stride: int = 0
    max_windows: int = 1
    window_pooling: str = "mean"
    # Provenance only (serving pools the same either way): what training's loss was on, each window
    # with its text's label or the text's pooled answer (--window-loss).
    window_loss: str = "window"
    format_version: int = SINGLE_LABEL_FORMAT_VERSION

    def __post_init__(self):
        def bad(field, wanted):
            raise UserError("field %r must be %s, not %r" % (field, wanted, getattr(self, field)))

        if not _is_int(self.max_seq_length) or self.max_seq_length < MIN_SEQ_LENGTH:
            bad("max_seq_length", "an integer >= %d" % MIN_SEQ_LENGTH)
        for field in ("do_lower_case", "multi_label"):
            if not isinstance(getattr(self, field), bool):
                bad(field, "true or false")
        if self.truncate not in TRUNCATIONS:
            bad("truncate", "one of %s" % ", ".join(TRUNCATIONS))
        if self.truncate == "windows":
            if not _is_int(self.window_stride) or not 0 < self.window_stride < self.max_seq_length - 2:
                bad("window_stride", "an integer in [1, max_seq_length - 3]")
            if not _is_int(self.max_windows) or self.max_windows < 1:
                bad("max_windows", "an integer >= 1")
            if self.window_pooling not in WINDOW_POOLINGS:
                bad("window_pooling", "one of %s" % ", ".join(WINDOW_POOLINGS))
            if self.window_loss not in WINDOW_LOSSES:
                bad("window_loss", "one of %s" % ", ".join(WINDOW_LOSSES))
        if self.pooling not in POOLINGS:
            bad("pooling", "one of %s" % ", ".join(POOLINGS))
        if self.num_labels is not None and (not _is_int(self.num_labels) or self.num_labels < 2):
            bad("num_labels", "an integer >= 2")
        for field in ("base_model", "created", "data_file", "data_sha256", "tf_version", "label_separator"):
            if not isinstance(getattr(self, field), str):
                bad(field, "a string")
        for field in ("val_metrics", "bert_config", "onnx", "calibration"):
            if not isinstance(getattr(self, field), dict):
                bad(field, "a JSON object")
        if not _is_int(self.format_version) or self.format_version > FORMAT_VERSION:
            bad("format_version", "an integer <= %d (a newer trainer wrote this export)" % FORMAT_VERSION)
        if self.multi_label:
            if not self.label_separator:
                bad("label_separator", "the separator of a multi_label export's labels")
            if self.format_version < FORMAT_VERSION:
                bad("format_version", "%d for a multi_label export" % FORMAT_VERSION)
            thresholds = self.calibration.get("thresholds")
            if thresholds is not None and (not isinstance(thresholds, list) or (
                    self.num_labels is not None and len(thresholds) != self.num_labels)):
                bad("calibration", "a record whose thresholds are a list of one per label")

    def to_dict(self):
        return dataclasses.asdict(self)

    def write(self, path):
        save_json(self.to_dict(), path)

    @classmethod
    def read(cls, path):
        """The config in `path`; a UserError naming the file and the field if it is not a valid one.
        Fields this code does not know are ignored (a tolerant reader); FORMAT_VERSION marks breaks."""
        try:
            data = load_json(path)
        except ValueError as exc:
            raise UserError("%s is not valid JSON: %s" % (path, exc))
        if not isinstance(data, dict):
            raise UserError("%s must hold a JSON object" % path)
        known = {field.name for field in dataclasses.fields(cls)}
        values = {name: value for name, value in data.items() if name in known}
        values.setdefault("format_version", 0)  # written before the field existed
        for field in ("max_seq_length", "do_lower_case"):
            if field not in values:
                raise UserError("%s has no field %r" % (path, field))
        try:
            return cls(**values)
        except UserError as exc:
            raise UserError("%s: %s" % (path, exc))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


# --- where exports are ----------------------------------------------------------------------

def is_export(path):
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def exports_newest_first(export_root):
    """Every complete export under `export_root`, newest first (temp dirs of unfinished exports skipped):
    the one rule for which export is newest, used by serving, its hot reload and the make targets."""
    if not os.path.isdir(export_root):
        raise UserError("model folder not found: %s (set MODEL_DIR, or make's model_dir=, to an export or a "
                        "folder of them)" % export_root)
    stamps = [name for name in os.listdir(export_root)
              if name.isdigit() and is_export(os.path.join(export_root, name))]
    if not stamps:
        raise UserError("no exported model under %s (train one with `make train`)" % export_root)
    return [os.path.join(export_root, name) for name in sorted(stamps, key=int, reverse=True)]


# Where the make targets look for exports when none is named: `make train`'s and every
# `--output-dir models/<run>`'s (the demo's among them).
EXPORT_FOLDERS = ("models/trained_model", "models/*/trained_model")


def newest_export(root, folders=EXPORT_FOLDERS):
    """The newest export in any of `folders` (glob patterns under `root`): make start_api's,
    build_api's and make chaos's default, by the rule of exports_newest_first."""
    found = []
    for pattern in folders:
        for folder in glob.glob(os.path.join(root, pattern)):
            try:
                found.append(exports_newest_first(folder)[0])
            except UserError:
                continue
    if not found:
        raise UserError("no exported model under models/ (train one with `make train`, or name one with "
                        "model_dir=path/to/trained_model)")
    return max(found, key=lambda path: int(os.path.basename(path)))


def latest_export(export_root):
    """The newest complete export under `export_root`."""
    return exports_newest_first(export_root)[0]


def resolve_export(path):
    """An export dir itself, or the newest export below a folder of them."""
    return path if is_export(path) else latest_export(path)


def assets_paths(folder):
    return {name: os.path.join(folder, name) for name in (LABELS_FILE, VOCAB_FILE, MODEL_CONFIG_FILE)}


def read_assets(export_dir):
    """(labels, vocab path, ExportConfig) of an export, with a clear error for a missing or bad file."""
    folder = os.path.join(export_dir, ASSETS_EXTRA)
    paths = assets_paths(folder)
    for path in paths.values():
        if not os.path.isfile(path):
            raise UserError("export is incomplete, missing %s" % path)
    try:
        labels = load_json(paths[LABELS_FILE])
    except ValueError as exc:
        raise UserError("export has a corrupt JSON file %s: %s" % (paths[LABELS_FILE], exc))
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise UserError("%s must hold a JSON list of label strings" % paths[LABELS_FILE])
    return labels, paths[VOCAB_FILE], ExportConfig.read(paths[MODEL_CONFIG_FILE])


def write_assets(folder, labels, vocab_file, config):
    """The `assets.extra` files of one export into `folder`; {name: path} as the estimator wants them."""
    paths = assets_paths(folder)
    save_json(list(labels), paths[LABELS_FILE])
    config.write(paths[MODEL_CONFIG_FILE])
    shutil.copyfile(vocab_file, paths[VOCAB_FILE])
    return paths
