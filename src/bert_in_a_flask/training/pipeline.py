"""The trainer's path, one named step each: load and check -> records -> estimator and exporter ->
train and evaluate -> the best export, calibrated (+ its ONNX copy) -> the report. cli.py parses the flags
into a TrainingConfig and calls `train`.
"""
import logging
import math
import os
import shutil

from ..serving.predictor import Predictor
from ..shared.errors import UserError
from ..shared.text import TextEncoder
from ..shared.tf_compat import TF_VERSION
from . import class_weights, data, pretrained, records
from .calibrate import calibrate_export
from .estimator import build_estimator, cluster_from_env, train_and_evaluate, training_devices
from .export import AssetsWriter, export_config_for, name_signatures, serving_input_receiver_fn_builder
from .exporter import BestCheckpointsExporter
from .model import model_fn_builder
from .onnx_export import Conversion
from .report import tfidf_baseline, write_report


class Inputs(object):
    """What every check produced before anything is written: the base checkpoint, the splits, the
    encoder, where training runs and the output folders."""

    def __init__(self, base, do_lower_case, splits, encoder, devices, cluster, paths, class_weights):
        self.base, self.do_lower_case, self.splits, self.encoder = base, do_lower_case, splits, encoder
        self.devices, self.cluster, self.paths = devices, cluster, paths
        self.class_weights = class_weights  # per label, in splits.labels' order; None: unweighted


def train(config):
    """The data's path: load -> records -> estimator -> train -> export -> calibrate -> report. Returns the best
    export's record (None on a cluster task that does not write the outputs)."""
    inputs = load_and_check(config)
    if config.overwrite:
        clear_previous_run(inputs.paths)
    logging.info(describe_devices(inputs.devices) + ("; %s (TF_CONFIG)" % inputs.cluster if inputs.cluster else ""))
    record_files = write_records(config, inputs)
    examples_per_step, max_steps = training_steps(config, inputs, record_files["train"])
    estimator, exporter = build_estimator_and_exporter(config, inputs, max_steps)
    train_and_evaluate(estimator=estimator, train_input_fn=train_input_fn(config, inputs, record_files["train"]),
                       eval_input_fn=records.input_fn_builder(record_files["val"], batch_size=config.eval_batch_size,
                                                              is_training=False, max_seq_length=config.max_seq_length,
                                                              multi_label_count=multi_label_count(inputs),
                                                              per_text=per_text_records(config)),
                       exporter=exporter, max_steps=max_steps, examples_per_step=examples_per_step, config=config)
    if inputs.cluster is not None and not inputs.cluster.writes_outputs:
        logging.info("%s: training done; the evaluator exports the best model and writes the report", inputs.cluster)
        return None
    best = best_export(exporter)
    if config.calibrate == "temperature":  # with several labels per text: the thresholds (calibrate.py)
        best = exporter.replace_best(calibrate_export(best["export_dir"], list(inputs.splits.val["text"]),
                                                      data.label_sets(inputs.splits.val, config.label_separator),
                                                      config.confidence_keeps))
    baseline = onnx_copy_and_baseline(config, inputs.splits, best["export_dir"])
    if not config.skip_report:
        report(best["export_dir"], inputs.splits, inputs.paths["report"], baseline)
    return best


def load_and_check(config):
    """Every check first; nothing is deleted or written until they all passed."""
    base = pretrained.load(config.bert_dir, config.max_seq_length)
    do_lower_case = records.resolve_do_lower_case(config.do_lower_case, base.vocab_file, base.init_checkpoint)
    splits = data.load_splits(config.data_file, text_column=config.text_column, label_column=config.label_column,
                              sep=config.sep, val_file=config.val_file, test_file=config.test_file, seed=config.seed,
                              label_separator=config.label_separator)
    encoder = TextEncoder(records.bert_tokenizer(base.vocab_file, do_lower_case), config.max_seq_length,
                          config.truncate, config.window_stride, config.max_windows)
    weights = class_weights.resolve(config.class_weights, data.label_sets(splits.train, splits.label_separator),
                                    splits.labels, multi_label=splits.label_separator is not None)
    if weights is not None:
        logging.info("class weights (%s): %s", config.class_weights,
                     ", ".join("%s %.3g" % pair for pair in zip(splits.labels, weights)))
    devices = training_devices(config.devices)
    cluster = cluster_from_env()
    if cluster is not None and config.overwrite:
        raise UserError("--overwrite deletes what the other tasks of the cluster read; clear %s before "
                        "starting the cluster instead" % config.output_dir)
    return Inputs(base, do_lower_case, splits, encoder, devices, cluster, check_writable_folders(config), weights)


def write_records(config, inputs):
    """{"train", "val"}: the splits' TFRecord files, encoded once and cached by content."""
    return {name: records.cached_records(frame, labels=inputs.splits.labels, encoder=inputs.encoder,
                                         vocab_file=inputs.base.vocab_file, do_lower_case=inputs.do_lower_case,
                                         cache_dir=config.cache_dir, split_name=name,
                                         label_separator=config.label_separator, per_text=per_text_records(config))
            for name, frame in (("train", inputs.splits.train), ("val", inputs.splits.val))}


def per_text_records(config):
    """--window-loss text trains and evaluates on whole texts: one record holds a text's windows."""
    return config.truncate == "windows" and config.window_loss == "text"


def training_steps(config, inputs, train_records):
    """(examples per step, steps). --batch-size is per replica: one per device, and per training task
    of a synchronous cluster (with parameter servers each task's batch is a step of its own). An epoch
    is a pass over the training records: with windows, every window of every text (--window-loss text:
    every text, a batch being --batch-size texts)."""
    cluster = inputs.cluster
    examples_per_step = config.batch_size * max(1, len(inputs.devices)) * (
        cluster.training_tasks if cluster is not None and cluster.synchronous else 1)
    n_texts, windows = len(inputs.splits.train), ""
    n_examples = n_texts
    if per_text_records(config):
        windows = ", %d windows of %d texts, whole texts a batch" % (records.count_windows(train_records), n_texts)
    elif config.truncate == "windows":
        n_examples = records.count_records(train_records)
        windows = ", %d windows of %d texts" % (n_examples, n_texts)
    max_steps = config.max_steps or int(math.ceil(config.num_train_epochs * n_examples / examples_per_step))
    logging.info("training %d steps of %d examples (%d labels%s) into %s", max_steps, examples_per_step,
                 len(inputs.splits.labels), windows, inputs.paths["checkpoints"])
    return examples_per_step, max_steps


def build_estimator_and_exporter(config, inputs, max_steps):
    """The estimator around bert's classifier (model.py) and the exporter that keeps the export with
    the lowest validation loss, its labels, vocab and model_config.json beside it."""
    base, labels, paths = inputs.base, inputs.splits.labels, inputs.paths
    model_fn = model_fn_builder(
        bert_config=base.config, num_labels=len(labels), init_checkpoint=base.init_checkpoint,
        learning_rate=config.learning_rate, num_train_steps=max_steps,
        num_warmup_steps=int(max_steps * config.warmup_proportion), pooling=config.pooling, use_amp=config.use_amp,
        label_names=labels, class_weights=inputs.class_weights, label_separator=config.label_separator,
        label_priors=label_priors(inputs.splits), window_pooling=config.window_pooling)
    estimator = build_estimator(model_fn=model_fn, model_dir=paths["checkpoints"], config=config,
                                devices=inputs.devices, cluster=inputs.cluster)
    export_config = export_config_for(config, bert_config=base.config, do_lower_case=inputs.do_lower_case,
                                      num_labels=len(labels), tf_version=TF_VERSION)
    serving_input_receiver_fn = serving_input_receiver_fn_builder(
        vocab_file=base.vocab_file, do_lower_case=inputs.do_lower_case, max_seq_length=config.max_seq_length,
        truncate=config.truncate, window_stride=config.window_stride, max_windows=config.max_windows)
    exporter = BestCheckpointsExporter(
        serving_input_receiver_fn, paths["trained_model"], paths["checkpoints"],
        AssetsWriter(labels, base.vocab_file, export_config, paths["checkpoints"]), finish_export=name_signatures)
    return estimator, exporter


def label_priors(splits):
    """A multi-label model's share of training texts per label (its head starts there); None otherwise."""
    if splits.label_separator is None:
        return None
    rows = data.label_sets(splits.train, splits.label_separator)
    return [sum(label in row for row in rows) / float(len(rows)) for label in splits.labels]


def multi_label_count(inputs):
    """The length of a multi-hot label record, None for one label per text."""
    return len(inputs.splits.labels) if inputs.splits.label_separator is not None else None


def train_input_fn(config, inputs, record_file):
    cluster = inputs.cluster
    return records.input_fn_builder(
        record_file, batch_size=config.batch_size, is_training=True, max_seq_length=config.max_seq_length,
        length_bucketing=config.length_bucketing, pad_to_max=config.pad_to_max_seq_length, seed=config.seed,
        shard=cluster.shard if cluster is not None and not cluster.synchronous else None,
        multi_label_count=multi_label_count(inputs), per_text=per_text_records(config))


def best_export(exporter):
    best = exporter.best()
    if best is None:
        raise UserError("no evaluation ran, so nothing was exported (is --max-steps 0?)")
    logging.info("best model: %s (validation loss %.4f at step %d)", best["export_dir"], best["loss"], best["step"])
    return best


def onnx_copy_and_baseline(config, splits, export_dir):
    """The export's verified ONNX copy (unless --skip-onnx) and the report's TF-IDF baseline (None with
    --skip-report), side by side: tf2onnx converts in its own process while this one fits the baseline
    (one core) and computes the SavedModel's answers the copy is checked against."""
    conversion = None if config.skip_onnx else Conversion(export_dir)
    try:
        baseline = None if config.skip_report else tfidf_baseline(splits)
        if conversion is not None:
            conversion.finish(texts=list(splits.val["text"]), seed=config.seed, quantize=config.quantize,
                              labels=data.label_sets(splits.val, splits.label_separator))
    finally:
        if conversion is not None:
            conversion.cancel()
    return baseline


def report(export_dir, splits, report_dir, baseline):
    """The test report from the export as served (its verified ONNX copy when there is one)."""
    predictor = Predictor(export_dir)
    try:
        write_report(predictor, splits, report_dir, baseline=baseline)
    finally:
        predictor.close()


OUTPUT_FOLDERS = ("checkpoints", "trained_model", "report")
CLEARED_BY_OVERWRITE = ("checkpoints", "report")  # exports are never deleted


def check_writable_folders(config):
    """{name: path} of the output folders (and the cache), each created and proven writable."""
    paths = {name: os.path.join(config.output_dir, name) for name in OUTPUT_FOLDERS}
    paths["cache"] = config.cache_dir
    for path in paths.values():
        try:
            os.makedirs(path, exist_ok=True)
            probe = os.path.join(path, ".write-test-%d" % os.getpid())
            open(probe, "w").close()
            os.remove(probe)
        except OSError as exc:
            raise UserError("output folder is not writable: %s (%s)" % (path, exc.strerror or exc))
    return paths


def clear_previous_run(paths):
    """--overwrite: called after every check passed, so a refused run deletes nothing."""
    for name in CLEARED_BY_OVERWRITE:
        shutil.rmtree(paths[name], ignore_errors=True)
        os.makedirs(paths[name])
    logging.info("--overwrite: deleted the previous %s", " and ".join(paths[n] for n in CLEARED_BY_OVERWRITE))


def describe_devices(devices):
    """One plain line saying where training runs (TF's own device chatter is silenced)."""
    if not devices:
        return "devices: CPU (%d cores; no GPU visible to TensorFlow)" % os.cpu_count()
    kind = "mirrored replicas" if len(devices) > 1 else "one device"
    return "devices: %s (%s)" % (", ".join(devices), kind)
