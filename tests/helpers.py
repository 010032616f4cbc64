"""Test helpers: a tiny random BERT written in Google's format, a small learnable data set, the
trainer's test settings, and ways to run the project's command lines in fresh processes."""
import csv
import json
import os
import random
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")

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


def run_cli(script, args, timeout=600, env=None):
    """Run a command line in a fresh process: "train.py" is src/train.py, a dotted name a module
    (`python -m bert_in_a_flask.tools.convert_minilm`). Returns the CompletedProcess."""
    command = [os.path.join(SRC, script)] if script.endswith(".py") else ["-m", script]
    return subprocess.run([sys.executable] + command + list(args), cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=timeout, env=env)


def tiny_vocab():
    words = sorted({w for ws in CLASS_KEYWORDS.values() for w in ws} | set(FILLER))
    return SPECIAL_TOKENS + words + ["##s", "##ing", "?", ".", ","]


def write_tiny_bert(folder, hidden_act="gelu"):
    """A random 2-layer BERT in Google's format: bert_config.json, vocab.txt, bert_model.ckpt.*"""
    from bert_in_a_flask.shared.tf_compat import tf  # first: it lends TF 2 the contrib module bert imports
    from bert import modeling

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


# Mean pooling: a random 2-layer BERT's tanh pooler saturates early and then merges two of the
# three classes for good, depending on the initialisation (seen on both runtimes at several
# learning rates and batch sizes). The [CLS] path is exercised with real weights by the MiniLM
# end-to-end test and by test_model.
TRAIN_ARGS = ["--max-seq-length", "32", "--batch-size", "16", "--learning-rate", "1e-3",
              "--num-train-epochs", "8", "--eval-every-steps", "60", "--log-every-steps", "30",
              "--warmup-proportion", "0.05", "--pooling", "mean"]


def call_log(app):
    """The JSON lines the app logged so far."""
    path = app.config["LOG_FILE"]
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


class FakePredictor(object):
    """What the app needs from a Predictor, without TensorFlow: answers "java" for texts with
    "jvm", else "python"."""

    labels = ["java", "python"]
    export_dir = "/exports/1700000000"
    name = "fake/1700000000"
    backend_name = "fake"
    @property
    def config(self):
        from bert_in_a_flask.shared.export_contract import ExportConfig
        return ExportConfig(max_seq_length=16, do_lower_case=True, base_model="fake", created="2026-11-25T00:00:00Z")

    def predict_proba(self, texts, client_gone=None, max_sequences=None):
        import numpy as np
        return np.array([[0.9, 0.1] if "jvm" in t else [0.2, 0.8] for t in texts])

    def predict(self, texts, client_gone=None, min_confidence=0.0, coverage=None, max_sequences=None):
        return self.postprocess(self.predict_proba(texts), min_confidence, coverage)

    # The real Predictor's postprocessing and calibration lookups, on this one's labels and config.
    from bert_in_a_flask.serving.predictor import Predictor
    postprocess, confidence_floor = Predictor.postprocess, Predictor.confidence_floor
    coverage_quantiles, calibrated = Predictor.coverage_quantiles, Predictor.calibrated
    multi_label, thresholds, chosen_labels = Predictor.multi_label, Predictor.thresholds, Predictor.chosen_labels
    multi_label_answer = Predictor.multi_label_answer
    del Predictor
