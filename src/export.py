"""The export directory: the one contract between training and serving.

    <export root>/<timestamp>/saved_model.pb, variables/      serving_default signature
    <export root>/<timestamp>/assets.extra/labels.json         ordered label list
                                          vocab.txt           the tokenizer's vocab
                                          model_config.json   how to tokenize + provenance
"""
import os
import shutil
import time

from errors import UserError
from tf_compat import tf
from utils.files import load_json, save_json

ASSETS_EXTRA = "assets.extra"
LABELS_FILE, VOCAB_FILE, MODEL_CONFIG_FILE = "labels.json", "vocab.txt", "model_config.json"
SIGNATURE_INPUTS = ("input_ids", "input_mask", "segment_ids")
SIGNATURE_OUTPUT = "probabilities"


def serving_input_receiver_fn():
    """int32 [batch, any length] inputs, so callers pad each batch only to its longest text."""
    receivers = {name: tf.placeholder(tf.int32, [None, None], name=name) for name in SIGNATURE_INPUTS}
    return tf.estimator.export.ServingInputReceiver(features=dict(receivers), receiver_tensors=receivers)


class AssetsWriter(object):
    """Builds the `assets.extra` files for the next export in one reused staging folder."""

    def __init__(self, labels, vocab_file, model_config, work_dir):
        self.labels, self.vocab_file = list(labels), vocab_file
        self.model_config, self.work_dir = dict(model_config), work_dir

    def __call__(self, extra_config):
        """{name in assets.extra: source path}, as `Estimator.export_saved_model` wants it."""
        folder = os.path.join(self.work_dir, "assets.extra.next")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        save_json(self.labels, os.path.join(folder, LABELS_FILE))
        # `created` is this export's time (the folder's timestamp), not the start of training.
        config = dict(self.model_config, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra_config)
        save_json(config, os.path.join(folder, MODEL_CONFIG_FILE))
        shutil.copyfile(self.vocab_file, os.path.join(folder, VOCAB_FILE))
        return {name: os.path.join(folder, name) for name in (LABELS_FILE, MODEL_CONFIG_FILE, VOCAB_FILE)}


def base_model_name(bert_config, do_lower_case):
    """What the base model is: the name a converter wrote into bert_config.json ("model_name"),
    else its shape, e.g. "bert-L12-H768-A12-cased" (Google's downloads carry no name)."""
    name = getattr(bert_config, "model_name", None)
    if name:
        return name
    return "bert-L%d-H%d-A%d-%s" % (bert_config.num_hidden_layers, bert_config.hidden_size,
                                    bert_config.num_attention_heads, "uncased" if do_lower_case else "cased")


def is_export(path):
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def latest_export(export_root):
    """The newest complete export under `export_root` (temp dirs of unfinished exports skipped)."""
    if not os.path.isdir(export_root):
        raise UserError("model folder not found: %s (set MODEL_DIR, or make's model_dir=, to an export or a "
                        "folder of them)" % export_root)
    stamps = [name for name in os.listdir(export_root)
              if name.isdigit() and is_export(os.path.join(export_root, name))]
    if not stamps:
        raise UserError("no exported model under %s (train one with `make train`)" % export_root)
    return os.path.join(export_root, max(stamps, key=int))


def resolve_export(path):
    """An export dir itself, or the newest export below a folder of them."""
    return path if is_export(path) else latest_export(path)


def read_assets(export_dir):
    """(labels, vocab path, model_config) of an export, with a clear error for a missing file."""
    folder = os.path.join(export_dir, ASSETS_EXTRA)
    paths = {name: os.path.join(folder, name) for name in (LABELS_FILE, VOCAB_FILE, MODEL_CONFIG_FILE)}
    for path in paths.values():
        if not os.path.isfile(path):
            raise UserError("export is incomplete, missing %s" % path)
    try:
        labels, config = load_json(paths[LABELS_FILE]), load_json(paths[MODEL_CONFIG_FILE])
    except ValueError as exc:
        raise UserError("export has a corrupt JSON file in %s: %s" % (folder, exc))
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise UserError("%s must hold a JSON list of label strings" % paths[LABELS_FILE])
    return labels, paths[VOCAB_FILE], config
