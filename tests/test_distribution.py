"""Several devices (two virtual CPUs under MirroredStrategy) and the AMP/XLA path, on a CPU."""
import json
import os
import re

import pytest

from helpers import TRAIN_ARGS, run_cli

pytestmark = pytest.mark.slow  # training runs, servers or subprocesses


def train(tiny_bert_dir, tiny_csv, out, *extra):
    result = run_cli("train.py", ["--data-file", tiny_csv, "--bert-dir", tiny_bert_dir, "--output-dir", str(out),
                                  "--cache-dir", str(out / "cache"), "--skip-report", "--skip-onnx"]
                     + TRAIN_ARGS + list(extra))
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [float(x) for x in re.findall(r"eval_loss = ([0-9.]+)", result.stderr)]
    with open(os.path.join(str(out), "checkpoints", "best_export.json")) as handle:
        return result.stderr, losses, json.load(handle)


def test_two_mirrored_devices_learn_like_one(tiny_bert_dir, tiny_csv, tmp_path):
    log, losses, best = train(tiny_bert_dir, tiny_csv, tmp_path / "mirrored", "--devices", "/cpu:0,/cpu:1",
                              "--batch-size", "8")
    assert "MirroredStrategy" in log and "devices: /cpu:0, /cpu:1 (mirrored replicas)" in log
    # 364 rows x 8 epochs / (8 per replica x 2 replicas) = 182 steps: the global step moved once per step
    assert re.search(r"Saving dict for global step 182:", log)
    # chance is ln(3) = 1.10; one device reaches ~0.002 with these settings
    assert max(losses[1:]) < 0.1 and best["loss"] < 0.05, losses
    assert best["metrics"]["accuracy"] >= 0.95


def test_amp_and_xla_path_trains(tiny_bert_dir, tiny_csv, tmp_path):
    """On a CPU the float16 rewrite does nothing, but the loss-scaled optimizer path must still learn."""
    log, losses, best = train(tiny_bert_dir, tiny_csv, tmp_path / "amp", "--use-amp", "--use-xla")
    assert best["loss"] < 0.05 and best["metrics"]["accuracy"] >= 0.95, losses


# Two examples whose gradients point different ways: one device clips their mean (norm > 1);
# clipping each replica's share alone (the old way) flips the sign of the first weight's step.
CLIPPED_EXAMPLES = [[10.0, 10.0], [-6.0, 0.0]]


def after_one_step(devices, loss_of_share, name):
    """The variable `name` after one AdamW step (create_train_op) on two examples: on one device,
    or split between mirrored replicas, each taking `loss_of_share(start, share)` of its share."""
    from bert_in_a_flask.shared.tf_compat import tf
    from bert_in_a_flask.training.optimization import create_train_op
    graph = tf.Graph()
    with graph.as_default():

        def step():
            replica = tf.distribute.get_replica_context()
            share = 2 // replica.num_replicas_in_sync
            start = replica.replica_id_in_sync_group * share
            return create_train_op(loss_of_share(start, share), 0.1, 10, 0)

        if len(devices) > 1:
            strategy = tf.distribute.MirroredStrategy(devices=devices)
            with strategy.scope():
                tf.train.get_or_create_global_step()
                train_op = tf.group(strategy.experimental_local_results(
                    strategy.extended.call_for_each_replica(step)))
        else:
            train_op = step()
        variable = [v for v in tf.global_variables() if v.name == name + ":0"][0]
        with tf.Session(config=tf.ConfigProto(device_count={"CPU": 2})) as session:
            session.run(tf.global_variables_initializer())
            session.run(train_op)
            return session.run(variable)


def one_step_weights(devices):
    """The variable `w` after one AdamW step on a linear loss over CLIPPED_EXAMPLES."""
    from bert_in_a_flask.shared.tf_compat import tf

    def loss(start, share):
        w = tf.get_variable("w", [2], initializer=tf.zeros_initializer())
        data = tf.constant(CLIPPED_EXAMPLES, tf.float32)
        return tf.reduce_mean(tf.reduce_sum(data[start:start + share] * w, axis=1))

    return after_one_step(devices, loss, "w")


def test_replicas_clip_the_whole_batch_gradient_as_one_device_does():
    import numpy as np
    one = one_step_weights(["/cpu:0"])
    two = one_step_weights(["/cpu:0", "/cpu:1"])
    assert (one < 0).all()  # both weights step down: the mean gradient (2, 5) is positive
    np.testing.assert_allclose(two, one, atol=1e-6)


def one_step_word_embeddings(devices):
    """A word-embedding table after one AdamW step; replica r looks up rows r, r + 1 (one device: all)."""
    from bert_in_a_flask.shared.tf_compat import tf
    name = "bert/embeddings/word_embeddings"

    def loss(start, share):
        table = tf.get_variable(name, initializer=tf.reshape(tf.range(8.0), [4, 2]))
        ids = tf.constant([[0, 1], [1, 2]])
        scale = tf.constant([[[3.0, -1.0], [0.5, 2.0]], [[-1.0, 4.0], [2.0, 2.0]]])
        rows = tf.gather(table, ids[start:start + share])
        return tf.reduce_mean(tf.reduce_sum(rows * scale[start:start + share], axis=[1, 2]))

    return after_one_step(devices, loss, name)


def test_replicas_update_the_word_embedding_rows_one_device_updates():
    """One device gets the table's gradient sparse, replicas get it summed and dense: both update
    rows 0-2 alike and leave row 3, which no replica looked up, as it was."""
    import numpy as np
    one = one_step_word_embeddings(["/cpu:0"])
    two = one_step_word_embeddings(["/cpu:0", "/cpu:1"])
    start = np.arange(8.0).reshape(4, 2)
    assert (np.abs(one[:3] - start[:3]) > 0.05).all()
    np.testing.assert_array_equal(one[3], start[3])
    np.testing.assert_allclose(two, one, atol=1e-6)
