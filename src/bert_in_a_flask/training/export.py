"""Writing the export (the contract is shared/export_contract.py): its two signatures and the
`assets.extra` files of each export.

    serving_default   int32 input_ids, input_mask, segment_ids [batch, any length] -> probabilities
    serve_text        text: strings [batch] -> probabilities, label (string), score (its probability),
                      bert's tokenizer and truncation inside the graph (text_signature.py)
"""
import dataclasses
import os
import shutil
import time

from tensorflow.core.protobuf import saved_model_pb2

from ..shared.export_contract import (FORMAT_VERSION, SIGNATURE_INPUTS, SINGLE_LABEL_FORMAT_VERSION, TEXT_INPUT,
                                      TEXT_SIGNATURE, WINDOW_TEXT, ExportConfig, write_assets)
from ..shared.files import file_sha256
from ..shared.tf_compat import tf
from .model import bert_config_dict
from .text_signature import text_features


def serving_input_receiver_fn_builder(*, vocab_file, do_lower_case, max_seq_length, truncate, window_stride=0,
                                      max_windows=1):
    """The export's inputs. The model reads ids; by default they are computed from `text` in the graph,
    and a caller of serving_default feeds them instead (PlaceholderWithDefault), which skips that part.
    Callers pad each batch only to its longest text. With windows, the rows of the ids are windows,
    and the text path adds `window_text` (which text each row is a window of) for serve_text's pooling."""

    def serving_input_receiver_fn():
        text = tf.placeholder(tf.string, [None], name=TEXT_INPUT)
        from_text = text_features(text, vocab_file=vocab_file, do_lower_case=do_lower_case,
                                  max_seq_length=max_seq_length, truncate=truncate, window_stride=window_stride,
                                  max_windows=max_windows)
        ids = {name: tf.placeholder_with_default(from_text[name], [None, None], name=name)
               for name in SIGNATURE_INPUTS}
        features = dict(ids)
        if WINDOW_TEXT in from_text:  # only serve_text's outputs read it, so serving_default never feeds text
            features[WINDOW_TEXT] = from_text[WINDOW_TEXT]
        return tf.estimator.export.ServingInputReceiver(
            features=features, receiver_tensors=ids,
            receiver_tensors_alternatives={TEXT_SIGNATURE: {TEXT_INPUT: text}})

    return serving_input_receiver_fn


def name_signatures(export_dir):
    """The estimator names a signature per (receiver, output) pair: "serving_default" and "serve_text" on
    the ids, "serve_text:serving_default" and "serve_text:serve_text" on the text. Keep the ids ->
    probabilities one and the text -> probabilities/label/score one, the latter as "serve_text"."""
    path = os.path.join(export_dir, "saved_model.pb")
    model = saved_model_pb2.SavedModel()
    with open(path, "rb") as handle:
        model.ParseFromString(handle.read())
    for meta_graph in model.meta_graphs:
        signatures = meta_graph.signature_def
        text_one = signatures["%s:%s" % (TEXT_SIGNATURE, TEXT_SIGNATURE)]
        signatures[TEXT_SIGNATURE].CopyFrom(text_one)
        for name in ("%s:%s" % (TEXT_SIGNATURE, TEXT_SIGNATURE), "%s:serving_default" % TEXT_SIGNATURE):
            del signatures[name]
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        handle.write(model.SerializeToString())
    os.replace(tmp, path)


def base_model_name(bert_config, do_lower_case):
    """What the base model is: the name a converter wrote into bert_config.json ("model_name"),
    else its shape, e.g. "bert-L12-H768-A12-cased" (Google's downloads carry no name)."""
    name = getattr(bert_config, "model_name", None)
    if name:
        return name
    return "bert-L%d-H%d-A%d-%s" % (bert_config.num_hidden_layers, bert_config.hidden_size,
                                    bert_config.num_attention_heads, "uncased" if do_lower_case else "cased")


def export_config_for(config, *, bert_config, do_lower_case, num_labels, tf_version):
    """The ExportConfig of this training run (each export adds its metrics, step and time)."""
    return ExportConfig(
        max_seq_length=config.max_seq_length, do_lower_case=do_lower_case, truncate=config.truncate,
        pooling=config.pooling, base_model=base_model_name(bert_config, do_lower_case), num_labels=num_labels,
        bert_config=bert_config_dict(bert_config), data_file=config.data_file,
        data_sha256=file_sha256(config.data_file), tf_version=tf_version,
        multi_label=config.label_separator is not None, label_separator=config.label_separator or "",
        format_version=FORMAT_VERSION if config.label_separator is not None else SINGLE_LABEL_FORMAT_VERSION,
        **(dict(window_stride=config.window_stride, max_windows=config.max_windows,
                window_pooling=config.window_pooling, window_loss=config.window_loss)
           if config.truncate == "windows" else {}))


class AssetsWriter(object):
    """Builds the `assets.extra` files for the next export in one reused staging folder."""

    def __init__(self, labels, vocab_file, export_config, work_dir):
        self.labels, self.vocab_file = list(labels), vocab_file
        self.export_config, self.work_dir = export_config, work_dir

    def __call__(self, val_metrics, global_step):
        """{name in assets.extra: source path}, as `Estimator.export_saved_model` wants it."""
        folder = os.path.join(self.work_dir, "assets.extra.next")
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        # `created` is this export's time (the folder's timestamp), not the start of training.
        config = dataclasses.replace(self.export_config, val_metrics=val_metrics, global_step=global_step,
                                     created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        return write_assets(folder, self.labels, self.vocab_file, config)
