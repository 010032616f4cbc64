"""Shared fixtures: a tiny random BERT (config, vocab, checkpoint written here), a small
learnable data set, and one model trained and exported from them, built once per session."""
import csv
import json
import os
import random
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
sys.path.insert(0, SRC)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Each class has its own keywords; every text has two of them among shared filler, so the
# model must find them to be right (chance is 1/3).
CLASS_KEYWORDS = {
    "python": ["django", "pandas", "numpy", "pip", "flask"],
    "java": ["spring", "maven", "jvm", "hibernate", "gradle"],
    "javascript": ["react", "npm", "node", "jquery", "webpack"],
}
FILLER = ["how", "do", "i", "fix", "my", "code", "error", "when", "using", "the", "with", "a",
          "why", "does", "not", "work", "in", "to", "get", "list", "file", "value", "loop", "null"]
TINY_BERT_CONFIG = {
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
    "max_position_embeddings": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
    "type_vocab_size": 2,
}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: subprocesses, servers or training (left out by make test-fast)")


def run_cli(script, args, timeout=600, env=None):
    """Run one of src/*.py in a fresh process; returns the CompletedProcess."""
    return subprocess.run([sys.executable, os.path.join(SRC, script)] + list(args), cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=timeout, env=env)


def tiny_vocab():
    words = sorted({w for ws in CLASS_KEYWORDS.values() for w in ws} | set(FILLER))
    return SPECIAL_TOKENS + words + ["##s", "##ing", "?", ".", ","]


def write_tiny_bert(folder, hidden_act="gelu"):
    """A random 2-layer BERT in Google's format: bert_config.json, vocab.txt, bert_model.ckpt.*"""
    from tf_compat import modeling, tf

    os.makedirs(folder, exist_ok=True)
    vocab = tiny_vocab()
    with open(os.path.join(folder, "vocab.txt"), "w") as handle:
        handle.write("\n".join(vocab) + "\n")
    config = dict(TINY_BERT_CONFIG, vocab_size=len(vocab), hidden_act=hidden_act)
    with open(os.path.join(folder, "bert_config.json"), "w") as handle:
        json.dump(config, handle)
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        input_ids = tf.placeholder(tf.int32, [None, None])
        modeling.BertModel(modeling.BertConfig.from_dict(config), False, input_ids)
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            tf.train.Saver().save(session, os.path.join(folder, "bert_model.ckpt"), write_meta_graph=False)
    return folder


def make_rows(n, seed):
    rng = random.Random(seed)
    labels = sorted(CLASS_KEYWORDS)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        words = rng.sample(FILLER, rng.randint(2, 8)) + rng.sample(CLASS_KEYWORDS[label], 2)
        rng.shuffle(words)
        rows.append((" ".join(words) + "?", label))
    return rows


def write_csv(path, rows, header=("post", "tags"), sep=","):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=sep)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return write_tiny_bert(str(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="session")
def tiny_csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("data") / "tiny.csv", make_rows(450, seed=1))


# Mean pooling: a random 2-layer BERT's tanh pooler saturates early and then merges two of the
# three classes for good, depending on the initialisation (seen on both runtimes at several
# learning rates and batch sizes). The [CLS] path is exercised with real weights by the MiniLM
# end-to-end test and by test_model.
TRAIN_ARGS = ["--max-seq-length", "32", "--batch-size", "16", "--learning-rate", "1e-3",
              "--num-train-epochs", "8", "--eval-every-steps", "60", "--log-every-steps", "30",
              "--warmup-proportion", "0.05", "--pooling", "mean"]


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_bert_dir, tiny_csv):
    """One real training run (fresh process) shared by the trainer, predictor and app tests."""
    out = tmp_path_factory.mktemp("run")
    result = run_cli("train.py", ["--data-file", tiny_csv, "--bert-dir", tiny_bert_dir,
                                  "--output-dir", str(out), "--cache-dir", str(out / "cache")] + TRAIN_ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(str(out), "checkpoints", "best_export.json")) as handle:
        best = json.load(handle)
    return {"output_dir": str(out), "export_dir": best["export_dir"], "best": best, "log": result.stderr}


@pytest.fixture(scope="session")
def predictor(trained):
    from predictor import Predictor
    return Predictor.from_export(trained["export_dir"], max_batch_size=8)


@pytest.fixture
def app(predictor, tmp_path):
    """A Flask app on the session's tiny export, its call log in a file of its own."""
    import settings
    from app import create_app
    config = settings.from_env({}, LOG_FILE=str(tmp_path / "calls.log"), MAX_TEXTS=256,
                               MAX_CONTENT_LENGTH=64 * 1024)
    app = create_app(config, predictor=predictor)
    app.testing = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def call_log(app):
    """The JSON lines the app logged so far."""
    path = app.config["LOG_FILE"]
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]
