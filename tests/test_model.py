"""model_fn pieces: warm start and the exact-gelu extension of bert's config."""
import numpy as np

from bert_in_a_flask.training.model import create_classifier, exact_gelu, load_bert_config, warm_start_from
from bert_in_a_flask.shared.tf_compat import tf


def test_warm_start_encoder_equals_the_base_checkpoint(tiny_bert_dir):
    checkpoint = tiny_bert_dir + "/bert_model.ckpt"
    config = load_bert_config(tiny_bert_dir + "/bert_config.json")
    graph = tf.Graph()
    with graph.as_default():
        ids = tf.constant([[2, 7, 3]], tf.int32)
        features = {"input_ids": ids, "input_mask": tf.ones_like(ids), "segment_ids": tf.zeros_like(ids)}
        create_classifier(config, True, features, tf.constant([0]), 3)
        assert warm_start_from(checkpoint) > 0
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            encoder = [v for v in tf.global_variables() if v.name.startswith("bert/")]
            values = session.run(encoder)
    reader = tf.train.load_checkpoint(checkpoint)
    assert len(encoder) == len(reader.get_variable_to_shape_map())
    for variable, value in zip(encoder, values):
        np.testing.assert_array_equal(value, reader.get_tensor(variable.name.split(":")[0]))


def test_exact_gelu_is_the_erf_form():
    with tf.Graph().as_default(), tf.Session() as session:
        got = session.run(exact_gelu(tf.constant([-2.0, -0.5, 0.0, 1.0, 3.0])))
    from math import erf, sqrt
    want = [0.5 * x * (1 + erf(x / sqrt(2))) for x in [-2.0, -0.5, 0.0, 1.0, 3.0]]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
