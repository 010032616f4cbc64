"""`model_fn_builder`: bert's BertModel + run_classifier's softmax head + bert's AdamW optimizer."""
import logging
import math
import os

from errors import UserError
from tf_compat import modeling, optimization, run_classifier, tf

log = logging.getLogger(__name__)

EXACT_GELU = "gelu_exact"  # bert's "gelu" is the tanh approximation; MiniLM was trained with erf


def exact_gelu(x):
    return 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


def load_bert_config(path):
    """bert's BertConfig, with our one extension: hidden_act "gelu_exact" (the erf form)."""
    if not os.path.isfile(path):
        raise UserError("bert config not found: %s" % path)
    try:
        config = modeling.BertConfig.from_json_file(path)
    except (ValueError, TypeError) as exc:
        raise UserError("%s is not a valid bert_config.json: %s" % (path, exc))
    if config.hidden_act == EXACT_GELU:
        config.hidden_act = exact_gelu
    return config


def bert_config_dict(config):
    """A JSON-safe copy of the config (the callable activation written back by name)."""
    data = config.to_dict()
    if callable(data["hidden_act"]):
        data["hidden_act"] = EXACT_GELU
    return data


POOLINGS = ("cls", "mean")


def create_classifier(bert_config, is_training, features, labels, num_labels, pooling="cls"):
    """(loss, per_example_loss, logits, probabilities).

    "cls" is run_classifier's `create_model` as it is (the [CLS] vector through bert's pooler).
    "mean" averages the last layer over the real tokens instead: sentence-transformers models
    such as all-MiniLM-L6-v2 were trained that way and their pooler never was. With no labels
    (serving) the loss gets zeros and is simply not used.
    """
    if labels is None:
        labels = tf.zeros_like(features["input_ids"][:, 0])
    if pooling == "cls":
        return run_classifier.create_model(
            bert_config, is_training, features["input_ids"], features["input_mask"],
            features["segment_ids"], labels, num_labels, use_one_hot_embeddings=False)
    model = modeling.BertModel(bert_config, is_training, features["input_ids"], features["input_mask"],
                               features["segment_ids"])
    mask = tf.cast(features["input_mask"], tf.float32)[:, :, None]
    pooled = tf.reduce_sum(model.get_sequence_output() * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
    return softmax_head(pooled, labels, num_labels, is_training)


def softmax_head(pooled, labels, num_labels, is_training):
    """run_classifier's head (same variable names), on a pooled vector of our choosing."""
    hidden_size = pooled.shape[-1].value
    output_weights = tf.get_variable("output_weights", [num_labels, hidden_size],
                                     initializer=tf.truncated_normal_initializer(stddev=0.02))
    output_bias = tf.get_variable("output_bias", [num_labels], initializer=tf.zeros_initializer())
    with tf.variable_scope("loss"):
        if is_training:
            pooled = tf.nn.dropout(pooled, rate=0.1)
        logits = tf.nn.bias_add(tf.matmul(pooled, output_weights, transpose_b=True), output_bias)
        probabilities = tf.nn.softmax(logits, axis=-1)
        per_example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return tf.reduce_mean(per_example_loss), per_example_loss, logits, probabilities


def warm_start_from(init_checkpoint):
    """Point every variable that the checkpoint also has at its value there (bert's way)."""
    if not init_checkpoint:
        return 0
    assignment_map, initialized = modeling.get_assignment_map_from_checkpoint(
        tf.trainable_variables(), init_checkpoint)
    tf.train.init_from_checkpoint(init_checkpoint, assignment_map)
    return len(initialized) // 2  # the map holds each name twice (with and without ":0")


def streaming_macro_f1(labels, predictions, num_labels):
    """(value, update_op) of macro-F1 over the whole eval set, via a running confusion matrix."""
    matrix = tf.Variable(tf.zeros([num_labels, num_labels], tf.float64), trainable=False,
                         name="macro_f1_confusion", collections=[tf.GraphKeys.LOCAL_VARIABLES])
    update = tf.assign_add(matrix, tf.cast(tf.math.confusion_matrix(
        labels, predictions, num_classes=num_labels), tf.float64))

    def macro_f1(cm):
        true_pos = tf.linalg.diag_part(cm)
        precision = tf.math.divide_no_nan(true_pos, tf.reduce_sum(cm, axis=0))
        recall = tf.math.divide_no_nan(true_pos, tf.reduce_sum(cm, axis=1))
        f1 = tf.math.divide_no_nan(2 * precision * recall, precision + recall)
        return tf.reduce_mean(f1)

    return macro_f1(matrix), macro_f1(update)


def learning_rate_schedule(init_lr, num_train_steps, num_warmup_steps):
    """bert's schedule (create_optimizer's): linear warm-up, then linear decay to zero."""
    global_step = tf.train.get_or_create_global_step()
    decayed = tf.train.polynomial_decay(tf.constant(init_lr, tf.float32), global_step, num_train_steps,
                                        end_learning_rate=0.0, power=1.0, cycle=False)
    if not num_warmup_steps:
        return decayed
    step = tf.cast(global_step, tf.float32)
    is_warmup = tf.cast(step < num_warmup_steps, tf.float32)
    return (1.0 - is_warmup) * decayed + is_warmup * init_lr * step / float(num_warmup_steps)


class ReplicatedAdamWeightDecay(optimization.AdamWeightDecayOptimizer):
    """bert's AdamW update rule, applied through `tf.train.Optimizer.apply_gradients`.

    bert's own `apply_gradients` assigns every variable itself and `create_optimizer` bumps the
    global step by hand; under a distribution strategy neither is all-reduced or guarded, and the
    assignments fail on mirrored variables. Going through the base class gives per-variable
    updates inside `strategy.extended.update`, summed gradients and one global-step increment,
    and lets a loss-scale optimizer (AMP) wrap it.
    """

    apply_gradients = tf.train.Optimizer.apply_gradients

    def _create_slots(self, var_list):
        for var in var_list:
            self._zeros_slot(var, "adam_m", self._name)
            self._zeros_slot(var, "adam_v", self._name)

    def _resource_apply_dense(self, grad, var):
        m, v = self.get_slot(var, "adam_m"), self.get_slot(var, "adam_v")
        next_m = self.beta_1 * m + (1.0 - self.beta_1) * grad
        next_v = self.beta_2 * v + (1.0 - self.beta_2) * tf.square(grad)
        update = next_m / (tf.sqrt(next_v) + self.epsilon)
        if self._do_use_weight_decay(self._get_variable_name(var.name)):
            update += self.weight_decay_rate * var
        return tf.group(var.assign_sub(self.learning_rate * update), m.assign(next_m), v.assign(next_v))

    def _resource_apply_sparse(self, grad, var, indices):
        dense = tf.math.unsorted_segment_sum(grad, indices, tf.shape(var)[0])
        return self._resource_apply_dense(dense, var)

    _apply_dense = _resource_apply_dense


def create_train_op(loss, init_lr, num_train_steps, num_warmup_steps, replicated=False, use_amp=False):
    """bert's `create_optimizer` on one device; the replica-safe path for several devices or AMP."""
    if not (replicated or use_amp):
        return optimization.create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, use_tpu=False)
    optimizer = ReplicatedAdamWeightDecay(
        learning_rate=learning_rate_schedule(init_lr, num_train_steps, num_warmup_steps), weight_decay_rate=0.01,
        beta_1=0.9, beta_2=0.999, epsilon=1e-6, exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"])
    if use_amp:
        # float16 graph rewrite + dynamic loss scaling; gradients come back unscaled, and a step
        # whose gradients overflowed is skipped (the scale shrinks) by the wrapper's apply.
        optimizer = tf.train.experimental.enable_mixed_precision_graph_rewrite(optimizer, loss_scale="dynamic")
    tvars = tf.trainable_variables()
    grads_and_vars = optimizer.compute_gradients(loss, tvars)
    # Dense gradients: replicas gather different embedding rows, and TF 2's collectives need
    # equal shapes on every replica.
    grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g, _ in grads_and_vars]
    grads, _ = tf.clip_by_global_norm(grads, clip_norm=1.0)
    return optimizer.apply_gradients(zip(grads, tvars), global_step=tf.train.get_or_create_global_step())


def model_fn_builder(bert_config, num_labels, init_checkpoint=None, learning_rate=5e-5,
                     num_train_steps=1, num_warmup_steps=0, pooling="cls", replicated=False, use_amp=False):
    """The estimator's model_fn (TRAIN, EVAL and PREDICT) for a `num_labels`-way classifier."""

    def model_fn(features, labels, mode, params=None):
        is_training = mode == tf.estimator.ModeKeys.TRAIN
        loss, per_example_loss, _, probabilities = create_classifier(
            bert_config, is_training, features, labels, num_labels, pooling)
        if is_training:
            log.info("warm start: %d variables from %s", warm_start_from(init_checkpoint), init_checkpoint)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)

        if mode == tf.estimator.ModeKeys.PREDICT:
            return tf.estimator.EstimatorSpec(
                mode, predictions={"probabilities": probabilities, "class_ids": class_ids},
                export_outputs={"serving_default": tf.estimator.export.PredictOutput(
                    {"probabilities": probabilities})})

        if mode == tf.estimator.ModeKeys.EVAL:
            metrics = {
                # Per example, not per batch: the exporter compares this one.
                "eval_loss": tf.metrics.mean(per_example_loss),
                "accuracy": tf.metrics.accuracy(labels, class_ids),
                "macro_f1": streaming_macro_f1(labels, class_ids, num_labels),
            }
            return tf.estimator.EstimatorSpec(mode, loss=loss, eval_metric_ops=metrics)

        train_op = create_train_op(loss, learning_rate, num_train_steps, num_warmup_steps, replicated, use_amp)
        return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)

    return model_fn
