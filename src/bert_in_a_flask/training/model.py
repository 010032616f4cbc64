"""`model_fn_builder`: bert's BertModel + run_classifier's softmax head + bert's AdamW (optimization.py)."""
import logging
import math
import os

from bert import modeling, run_classifier

from ..shared.errors import UserError
from ..shared.export_contract import (CALIBRATION_SCOPE, DEFAULT_THRESHOLD, LOGITS_TENSOR, MIN_CONFIDENCE_VARIABLE,
                                      POOLED_TENSOR, TEMPERATURE_VARIABLE, TEXT_SIGNATURE, THRESHOLDS_VARIABLE,
                                      WINDOW_TEXT)
from ..shared.tf_compat import tf
from ..shared.windows import EPSILON as WINDOW_EPSILON
from .optimization import create_train_op
from .records import WINDOW_LENGTHS

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


def create_classifier(bert_config, is_training, features, labels, num_labels, pooling="cls", multi_label=False,
                      positive_weights=None, label_priors=None, window_pool=None):
    """(loss, per_example_loss, logits, probabilities).

    "cls" is run_classifier's `create_model` as it is (the [CLS] vector through bert's pooler).
    "mean" averages the last layer over the real tokens instead: sentence-transformers models
    such as all-MiniLM-L6-v2 were trained that way and their pooler never was. `multi_label`: the
    same head with sigmoid outputs and binary cross-entropy (sigmoid_head). With no labels (serving)
    the loss gets zeros and is simply not used. `window_pool` (training_rows): the rows are windows,
    and logits, probabilities and loss are their texts', pooled as serving pools them.
    """
    if labels is None:
        labels = (tf.zeros([tf.shape(features["input_ids"])[0], num_labels]) if multi_label
                  else tf.zeros_like(features["input_ids"][:, 0]))
    if pooling == "cls" and not multi_label and window_pool is None:
        return run_classifier.create_model(
            bert_config, is_training, features["input_ids"], features["input_mask"],
            features["segment_ids"], labels, num_labels, use_one_hot_embeddings=False)
    model = modeling.BertModel(bert_config, is_training, features["input_ids"], features["input_mask"],
                               features["segment_ids"])
    if pooling == "cls":
        pooled = model.get_pooled_output()
    else:
        mask = tf.cast(features["input_mask"], tf.float32)[:, :, None]
        pooled = tf.reduce_sum(model.get_sequence_output() * mask, axis=1) / tf.maximum(
            tf.reduce_sum(mask, axis=1), 1.0)
    pooled = tf.identity(pooled, name=POOLED_TENSOR.split(":")[0])  # named for tools/ood.py's centroid score
    if multi_label:
        return sigmoid_head(pooled, labels, num_labels, is_training, positive_weights, label_priors, window_pool)
    return softmax_head(pooled, labels, num_labels, is_training, window_pool)


def training_rows(features, pooling, multi_label=False):
    """(features, window_pool): a batch of whole texts (--window-loss text) as rows of their windows, and
    the function that pools the rows' logits into their texts'; other batches as they are, and None."""
    if WINDOW_LENGTHS not in features:
        return features, None
    lengths = features[WINDOW_LENGTHS]  # [texts, windows]; 0 where a text has fewer windows
    real = lengths > 0
    ids = tf.boolean_mask(features["input_ids"], real)
    rows = {"input_ids": ids, "segment_ids": tf.zeros_like(ids),
            "input_mask": tf.sequence_mask(tf.boolean_mask(lengths, real), tf.shape(ids)[1], dtype=tf.int32)}
    window_text, n_texts = tf.cast(tf.where(real)[:, 0], tf.int32), tf.shape(lengths)[0]

    def window_pool(logits):
        """A text's logits from its windows' by pooled_in_graph's rule: the mean (max) of the
        log-probabilities, whose softmax is the text's answer; multi-label: of the logits. Unclipped
        (serving clips at shared/windows.EPSILON): a clip would stop the gradient of a saturated window."""
        segment = tf.math.unsorted_segment_max if pooling == "max" else tf.math.unsorted_segment_mean
        return segment(logits if multi_label else tf.nn.log_softmax(logits, axis=-1), window_text, n_texts)

    return rows, window_pool


def output_layer(pooled, num_labels, initial_bias=None):
    """run_classifier's output weights and bias (same variable names, outside the "loss" scope)."""
    hidden_size = pooled.shape[-1].value
    output_weights = tf.get_variable("output_weights", [num_labels, hidden_size],
                                     initializer=tf.truncated_normal_initializer(stddev=0.02))
    output_bias = tf.get_variable("output_bias", [num_labels], initializer=tf.zeros_initializer()
                                  if initial_bias is None else tf.constant_initializer(initial_bias))
    return output_weights, output_bias


def head_logits(pooled, weights, bias, is_training, window_pool=None):
    if is_training:
        pooled = tf.nn.dropout(pooled, rate=0.1)
    logits = tf.nn.bias_add(tf.matmul(pooled, weights, transpose_b=True), bias)
    return logits if window_pool is None else window_pool(logits)


def softmax_head(pooled, labels, num_labels, is_training, window_pool=None):
    """run_classifier's head on a pooled vector of our choosing: softmax over the labels,
    cross-entropy against the label index."""
    weights, bias = output_layer(pooled, num_labels)
    with tf.variable_scope("loss"):
        logits = head_logits(pooled, weights, bias, is_training, window_pool)
        probabilities = tf.nn.softmax(logits, axis=-1)
        per_example_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return tf.reduce_mean(per_example_loss), per_example_loss, logits, probabilities


def prior_logits(label_priors):
    """The bias that makes an untrained sigmoid head answer each label's training frequency: with a
    bias of 0 every label starts at 0.5, and the first steps only push all of them down (Lin et al.
    2017, "Focal Loss", on initialising for the prior)."""
    clipped = [min(max(float(p), 1e-4), 1 - 1e-4) for p in label_priors]
    return [math.log(p / (1 - p)) for p in clipped]


def sigmoid_head(pooled, labels, num_labels, is_training, positive_weights=None, label_priors=None,
                 window_pool=None):
    """Several labels per text: an independent sigmoid per label; a text's loss is the binary
    cross-entropy summed over the labels (the negative log-likelihood of its label vector). With
    `positive_weights` (one per label) a label's positives weigh that much more in training; with
    `label_priors` (each label's share of the training texts) the bias starts at their logits."""
    weights, bias = output_layer(pooled, num_labels, prior_logits(label_priors) if label_priors else None)
    with tf.variable_scope("loss"):
        logits = head_logits(pooled, weights, bias, is_training, window_pool)
        probabilities = tf.nn.sigmoid(logits)
        if positive_weights is None:
            per_label = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        else:
            per_label = tf.nn.weighted_cross_entropy_with_logits(
                labels, logits, tf.constant(positive_weights, tf.float32))
        per_example_loss = tf.reduce_sum(per_label, axis=-1)
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


def calibration_variables():
    """(temperature, min_confidence): scalars every graph holds (so checkpoints and exports do), 1 and 0
    until calibrate.py sets them in the export from the validation split. Not trained."""
    with tf.variable_scope(CALIBRATION_SCOPE):
        return tuple(tf.get_variable(name, shape=[], dtype=tf.float32, trainable=False,
                                     initializer=tf.constant_initializer(value))
                     for name, value in ((TEMPERATURE_VARIABLE, 1.0), (MIN_CONFIDENCE_VARIABLE, 0.0)))


def threshold_variable(num_labels):
    """A multi-label graph's decision threshold per label: DEFAULT_THRESHOLD until calibrate.py tunes
    them in the export on the validation split. Not trained."""
    with tf.variable_scope(CALIBRATION_SCOPE):
        return tf.get_variable(THRESHOLDS_VARIABLE, shape=[num_labels], dtype=tf.float32, trainable=False,
                               initializer=tf.constant_initializer(DEFAULT_THRESHOLD))


def multi_label_text_outputs(probabilities, thresholds, label_names, label_separator):
    """serve_text's outputs for a multi-label export: `predicted` [batch, labels] (probability >= the
    label's threshold), `label` the chosen labels in label order joined by the separator ("" for none),
    `score` the top probability, `accepted` whether any label was chosen."""
    predicted = probabilities >= thresholds[None, :]
    names = tf.constant([name + label_separator for name in label_names])
    joined = tf.strings.reduce_join(tf.where(predicted, tf.tile(names[None, :], [tf.shape(predicted)[0], 1]),
                                     tf.fill(tf.shape(predicted), "")), axis=1)
    # every chosen name carries the separator after it: cut the last one
    cut = len(label_separator.encode("utf-8"))  # substr and length count bytes
    length = tf.maximum(tf.strings.length(joined) - cut, 0)
    label = tf.strings.substr(joined, tf.zeros_like(length), length)
    return {"probabilities": probabilities, "label": label, "score": tf.reduce_max(probabilities, axis=-1),
            "accepted": tf.reduce_any(predicted, axis=-1), "predicted": predicted}


def pooled_in_graph(probabilities, window_text, pooling, multi_label=False):
    """serve_text's answer per text from its windows' rows (shared/windows.py's rule, in the graph): the
    mean (max) of each label's log-probability, then a softmax; multi-label: the mean of each label's
    logit, then its sigmoid (or the max of its probability)."""
    n_texts = tf.maximum(tf.reduce_max(window_text) + 1, 0)  # an empty batch: no texts
    segment = tf.math.unsorted_segment_max if pooling == "max" else tf.math.unsorted_segment_mean
    if multi_label and pooling == "max":
        return segment(probabilities, window_text, n_texts)
    p = tf.clip_by_value(probabilities, WINDOW_EPSILON, 1.0 - WINDOW_EPSILON)
    if multi_label:
        return tf.nn.sigmoid(segment(tf.math.log(p) - tf.math.log(1.0 - p), window_text, n_texts))
    return tf.nn.softmax(segment(tf.math.log(p), window_text, n_texts), axis=-1)


def multi_label_metrics(labels, probabilities, per_example_loss):
    """Evaluation metrics of a multi-label model at DEFAULT_THRESHOLD (the tuned thresholds do not exist
    yet): eval_loss (picks the export), micro-F1 and subset accuracy."""
    truth = labels > 0.5
    chosen = probabilities >= DEFAULT_THRESHOLD
    counts = [metric(truth, chosen) for metric in (tf.metrics.true_positives, tf.metrics.false_positives,
                                                    tf.metrics.false_negatives)]

    def f1(tp, fp, fn):
        return tf.math.divide_no_nan(2 * tp, 2 * tp + fp + fn)

    return {
        "eval_loss": tf.metrics.mean(per_example_loss),
        "micro_f1": (f1(*[value for value, _ in counts]), f1(*[update for _, update in counts])),
        "subset_accuracy": tf.metrics.mean(tf.cast(tf.reduce_all(tf.equal(truth, chosen), axis=-1), tf.float32)),
    }


def model_fn_builder(*, bert_config, num_labels, init_checkpoint=None, learning_rate=5e-5,
                     num_train_steps=1, num_warmup_steps=0, pooling="cls", use_amp=False, label_names=None,
                     class_weights=None, label_separator=None, label_priors=None, window_pooling="mean"):
    """The estimator's model_fn (TRAIN, EVAL and PREDICT) for a `num_labels`-way classifier. With
    `label_names`, PREDICT also answers the top label as a string (the `serve_text` outputs). With
    `class_weights` (one per label), training minimises the weighted cross-entropy; evaluation's
    loss, which picks the best export, stays the plain one. With `label_separator`, a text has any
    number of labels (multi-hot labels, sigmoid outputs; class_weights weigh each label's positives).
    `window_pooling`: how serve_text pools the windows of a text (--truncate windows), and how training
    pools them when its batches are whole texts (--window-loss text)."""
    if label_separator is not None:
        return multi_label_model_fn_builder(
            bert_config=bert_config, num_labels=num_labels, init_checkpoint=init_checkpoint,
            learning_rate=learning_rate, num_train_steps=num_train_steps, num_warmup_steps=num_warmup_steps,
            pooling=pooling, use_amp=use_amp, label_names=label_names, positive_weights=class_weights,
            label_separator=label_separator, label_priors=label_priors, window_pooling=window_pooling)

    def model_fn(features, labels, mode, params=None):
        is_training = mode == tf.estimator.ModeKeys.TRAIN
        features, window_pool = training_rows(features, window_pooling)
        loss, per_example_loss, logits, probabilities = create_classifier(
            bert_config, is_training, features, labels, num_labels, pooling, window_pool=window_pool)
        if is_training:
            log.info("warm start: %d variables from %s", warm_start_from(init_checkpoint), init_checkpoint)
        class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        temperature, min_confidence = calibration_variables()

        if mode == tf.estimator.ModeKeys.PREDICT:
            tf.identity(logits, name=LOGITS_TENSOR.split(":")[0])  # named for tools/ood.py's energy score
            # Exports answer calibrated probabilities: softmax(log p / T) = softmax(logits / T), and
            # the argmax (class_ids) is the same for every T > 0.
            probabilities = tf.nn.softmax(tf.math.log(tf.maximum(probabilities, 1e-30)) / temperature, axis=-1)
            score = tf.reduce_max(probabilities, axis=-1)
            export_outputs = {"serving_default": tf.estimator.export.PredictOutput({"probabilities": probabilities})}
            if label_names is not None:
                text_probabilities, text_ids, text_score = probabilities, class_ids, score
                if WINDOW_TEXT in features:  # the rows are windows: one answer per text
                    text_probabilities = pooled_in_graph(probabilities, features[WINDOW_TEXT], window_pooling)
                    text_ids = tf.argmax(text_probabilities, axis=-1, output_type=tf.int32)
                    text_score = tf.reduce_max(text_probabilities, axis=-1)
                export_outputs[TEXT_SIGNATURE] = tf.estimator.export.PredictOutput({
                    "probabilities": text_probabilities,
                    "label": tf.gather(tf.constant(list(label_names)), text_ids),
                    "score": text_score, "accepted": text_score >= min_confidence})
            return tf.estimator.EstimatorSpec(
                mode, predictions={"probabilities": probabilities, "class_ids": class_ids},
                export_outputs=export_outputs)

        if mode == tf.estimator.ModeKeys.EVAL:
            metrics = {
                # Per example, not per batch: the exporter compares this one.
                "eval_loss": tf.metrics.mean(per_example_loss),
                "accuracy": tf.metrics.accuracy(labels, class_ids),
                "macro_f1": streaming_macro_f1(labels, class_ids, num_labels),
            }
            return tf.estimator.EstimatorSpec(mode, loss=loss, eval_metric_ops=metrics)

        if class_weights is not None:
            weights = tf.gather(tf.constant(class_weights, tf.float32), labels)
            loss = tf.reduce_sum(per_example_loss * weights) / tf.maximum(tf.reduce_sum(weights), 1e-12)
        train_op = create_train_op(loss, learning_rate, num_train_steps, num_warmup_steps, use_amp)
        return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)

    return model_fn


def multi_label_model_fn_builder(*, bert_config, num_labels, init_checkpoint, learning_rate, num_train_steps,
                                 num_warmup_steps, pooling, use_amp, label_names, positive_weights, label_separator,
                                 label_priors, window_pooling="mean"):
    """model_fn_builder's model_fn for several labels per text: sigmoid probabilities on every path,
    no temperature (each label's probability is its own), a decision threshold per label."""

    def model_fn(features, labels, mode, params=None):
        is_training = mode == tf.estimator.ModeKeys.TRAIN
        features, window_pool = training_rows(features, window_pooling, multi_label=True)
        # training alone weighs positives: evaluation's loss, which picks the export, stays the plain one
        loss, per_example_loss, logits, probabilities = create_classifier(
            bert_config, is_training, features, labels, num_labels, pooling, multi_label=True,
            positive_weights=positive_weights if is_training else None, label_priors=label_priors,
            window_pool=window_pool)
        if is_training:
            log.info("warm start: %d variables from %s", warm_start_from(init_checkpoint), init_checkpoint)
        thresholds = threshold_variable(num_labels)  # in every graph, so checkpoints hold it too

        if mode == tf.estimator.ModeKeys.PREDICT:
            tf.identity(logits, name=LOGITS_TENSOR.split(":")[0])
            export_outputs = {"serving_default": tf.estimator.export.PredictOutput({"probabilities": probabilities})}
            if label_names is not None:
                text_probabilities = (pooled_in_graph(probabilities, features[WINDOW_TEXT], window_pooling, True)
                                      if WINDOW_TEXT in features else probabilities)
                export_outputs[TEXT_SIGNATURE] = tf.estimator.export.PredictOutput(
                    multi_label_text_outputs(text_probabilities, thresholds, list(label_names), label_separator))
            return tf.estimator.EstimatorSpec(mode, predictions={"probabilities": probabilities},
                                              export_outputs=export_outputs)

        if mode == tf.estimator.ModeKeys.EVAL:
            return tf.estimator.EstimatorSpec(mode, loss=loss, eval_metric_ops=multi_label_metrics(
                labels, probabilities, per_example_loss))

        train_op = create_train_op(loss, learning_rate, num_train_steps, num_warmup_steps, use_amp)
        return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)

    return model_fn
