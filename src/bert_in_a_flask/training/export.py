"""Writing the export (the contract is shared/export_contract.py): the serving signature and the
`assets.extra` files of each export."""
import dataclasses
import os
import shutil
import time

from ..shared.export_contract import SIGNATURE_INPUTS, ExportConfig, write_assets
from ..shared.files import file_sha256
from ..shared.tf_compat import tf
from .model import bert_config_dict


def serving_input_receiver_fn():
    """int32 [batch, any length] inputs, so callers pad each batch only to its longest text."""
    receivers = {name: tf.placeholder(tf.int32, [None, None], name=name) for name in SIGNATURE_INPUTS}
    return tf.estimator.export.ServingInputReceiver(features=dict(receivers), receiver_tensors=receivers)


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
        data_sha256=file_sha256(config.data_file), tf_version=tf_version)


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
