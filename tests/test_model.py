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


def adamw_steps(apply_steps, steps=3):
    """Weights after `steps` AdamW steps on fixed gradients: a decayed matrix and an excluded bias."""
    graph = tf.Graph()
    with graph.as_default():
        weights = tf.get_variable("dense/kernel", initializer=tf.constant([[0.5, -1.5], [2.0, 0.25]]))
        bias = tf.get_variable("dense/bias", initializer=tf.constant([0.3, -0.7]))
        step = tf.placeholder(tf.int32, [])
        grads = [tf.cast(step + 1, tf.float32) * tf.constant([[0.1, -0.2], [0.3, 0.05]]),
                 tf.constant([-0.4, 0.9]) / tf.cast(step + 1, tf.float32)]
        train_op = apply_steps(list(zip(grads, [weights, bias])))
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            for i in range(steps):
                session.run(train_op, {step: i})
            return session.run([weights, bias])


def test_fused_adamw_step_is_berts_update_rule():
    """Our AdamW runs TF's fused Adam kernel; the weights must be those of bert's own optimizer."""
    from bert import optimization as bert_optimization
    from bert_in_a_flask.training.optimization import ADAMW, AdamWeightDecay

    ours = adamw_steps(lambda pairs: AdamWeightDecay(learning_rate=0.1, **ADAMW).apply_gradients(pairs))
    berts = adamw_steps(lambda pairs: bert_optimization.AdamWeightDecayOptimizer(
        learning_rate=0.1, **ADAMW).apply_gradients(pairs))
    untouched = [np.array([[0.5, -1.5], [2.0, 0.25]]), np.array([0.3, -0.7])]
    for got, want, start in zip(ours, berts, untouched):
        assert np.abs(want - start).max() > 0.1  # three steps of 0.1 really moved them
        # The kernel takes b2 as float32 and computes 1 - b2 there (1.00005e-3, not 1e-3): that
        # moves v by 5e-5 and a step by ~2.5e-5 of itself; a different rule would move it by far more.
        np.testing.assert_allclose(got, want, rtol=5e-5, atol=1e-6)


def word_embedding_steps(optimizer, lookup, steps=3):
    """A 5 x 2 word-embedding table after `steps` AdamW steps of lr 0.1 on a loss over rows 1, 1, 3
    and 4, where row 4 is looked up but masked out (like [PAD]: its gradient is 0)."""
    with tf.Graph().as_default():
        start = np.array([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0], [-2.0, 1.0], [0.25, 0.75]], np.float32)
        table = tf.get_variable("bert/embeddings/word_embeddings", initializer=tf.constant(start))
        step = tf.placeholder(tf.float32, [])
        rows = lookup(table, tf.constant([1, 1, 3, 4]))
        weights = tf.constant([[3.0, -4.0], [1.0, 2.0], [-5.0, 0.5], [0.0, 0.0]]) * (step + 1.0)
        gradient, = tf.gradients(tf.reduce_sum(rows * weights), [table])
        train_op = optimizer.apply_gradients([(gradient, table)])
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            for i in range(steps):
                session.run(train_op, {step: i})
            return start, session.run(table)


def test_a_step_updates_only_the_word_embedding_rows_the_batch_used():
    """The word-embedding table takes bert's AdamW step on the rows whose gradient is not zero,
    and the other rows (moments and weight decay included) stay as they were; a dense gradient
    (as summed over replicas) gives the same step as the sparse one."""
    from bert import optimization as bert_optimization
    from bert_in_a_flask.training.optimization import ADAMW, ROWS_UPDATED_WHEN_USED, AdamWeightDecay

    def ours():
        return AdamWeightDecay(learning_rate=0.1, rows_updated_when_used=ROWS_UPDATED_WHEN_USED, **ADAMW)

    start, sparse = word_embedding_steps(ours(), tf.gather)
    _, dense = word_embedding_steps(ours(), lambda table, ids: tf.matmul(tf.one_hot(ids, 5), table))
    _, berts = word_embedding_steps(bert_optimization.AdamWeightDecayOptimizer(learning_rate=0.1, **ADAMW), tf.gather)
    used, unused = [1, 3], [0, 2, 4]
    assert np.abs(sparse[used] - start[used]).min() > 0.1  # three steps of 0.1 really moved them
    np.testing.assert_allclose(sparse[used], berts[used], rtol=5e-5, atol=1e-6)  # see the fused-kernel test
    np.testing.assert_array_equal(sparse[unused], start[unused])
    assert (berts[unused] != start[unused]).any(axis=1).all()  # bert's dense step decays every row
    np.testing.assert_allclose(dense, sparse, rtol=1e-6, atol=1e-7)


def test_bert_trains_with_matmuls_and_computes_what_tf_einsum_does(tiny_bert_dir):
    """On TF 2 the trainer gives bert's modeling TF 1.15's einsum (MatMul ops, faster gradients):
    no Einsum op is left in its graph, and the encoder's output is what the Einsum op gives."""
    from bert import modeling
    config = load_bert_config(tiny_bert_dir + "/bert_config.json")

    def encode(tf_for_bert):
        original, modeling.tf = modeling.tf, tf_for_bert
        try:
            with tf.Graph().as_default() as graph:
                ids = tf.constant([[2, 7, 3, 9], [4, 5, 0, 0]], tf.int32)
                mask = tf.constant([[1, 1, 1, 1], [1, 1, 0, 0]], tf.int32)
                output = modeling.BertModel(config, False, ids, mask, tf.zeros_like(ids)).get_sequence_output()
                assert warm_start_from(tiny_bert_dir + "/bert_model.ckpt") > 0
                with tf.Session() as session:
                    session.run(tf.global_variables_initializer())
                    return {op.type for op in graph.get_operations()}, session.run(output)
        finally:
            modeling.tf = original

    trained_ops, trained = encode(modeling.tf)
    assert "Einsum" not in trained_ops and "MatMul" in trained_ops
    _, plain = encode(getattr(modeling.tf, "_module", modeling.tf))  # TF 2's own tf.einsum
    np.testing.assert_allclose(trained, plain, rtol=1e-5, atol=1e-5)


def clipped_gradient_of_a_table(lookup):
    """The clipped gradient of a 4 x 2 embedding table, for a loss over rows 1, 1 and 3, as an array."""
    from bert_in_a_flask.training.optimization import clip_as_on_one_device
    with tf.Graph().as_default():
        table = tf.get_variable("word_embeddings",
                                initializer=tf.constant([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0], [-2.0, 1.0]]))
        rows = lookup(table, tf.constant([1, 1, 3]))
        loss = tf.reduce_sum(rows * tf.constant([[3.0, -4.0], [1.0, 2.0], [-5.0, 0.5]]))  # norm far above 1
        gradient, = clip_as_on_one_device(tf.gradients(loss, [table]))
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            return session.run(tf.convert_to_tensor(gradient))


def test_a_sparse_embedding_gradient_is_clipped_as_its_dense_form():
    """The word-embedding gradient is clipped in its sparse form: its repeated rows must be summed
    before the norm is taken, so the clipped gradient is the dense form's."""
    sparse = clipped_gradient_of_a_table(tf.gather)
    dense = clipped_gradient_of_a_table(lambda table, ids: tf.matmul(tf.one_hot(ids, 4), table))
    assert abs(np.linalg.norm(dense) - 1.0) < 1e-6 and (dense[[0, 2]] == 0).all()
    np.testing.assert_allclose(sparse, dense, rtol=1e-6, atol=1e-7)


def test_the_step_profile_splits_a_real_training_step_into_its_parts(tiny_bert_dir, tiny_csv):
    """`make bench`'s "where a step's time goes": the trainer's graph, each op in one part."""
    from bert_in_a_flask.tools import step_profile
    wall_ms, parts, kinds = step_profile.profile(tiny_bert_dir, tiny_csv, steps=2, warmup=1, batch_size=8,
                                                 max_seq_length=32)
    assert wall_ms > 0
    for part in ("forward", "backward", "optimizer: AdamW + clipping"):
        assert parts[part] > 0, parts
    assert set(kinds) == {"matrix products", "element-wise and the rest"}
    assert abs(sum(parts.values()) - sum(kinds.values())) < 1e-6 * sum(parts.values()) + 1e-9
