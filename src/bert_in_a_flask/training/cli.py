"""Fine-tune a Google-format BERT checkpoint for text classification (tf.estimator).

    python src/train.py --data-file data/stack-overflow-data.csv --bert-dir models/pretrained

Writes checkpoints and TensorBoard logs to <output-dir>/checkpoints, the best model by
validation loss to <output-dir>/trained_model/<timestamp>, a test report to <output-dir>/report.
Rerunning continues from the newest checkpoint; --overwrite starts afresh.
"""
import argparse
import logging
import math
import os
import re
import shutil
import sys

from ..shared.cli import ArgumentParser, at_least, fraction, non_negative_int, positive_float, positive_int
from ..shared.errors import UserError, run_cli
from ..shared.export_contract import POOLINGS
from ..shared.text import MIN_SEQ_LENGTH, TRUNCATIONS
from .config import TrainingConfig

DEVICE_NAME = re.compile(r"^/(device:)?(cpu|gpu|CPU|GPU):\d+$")


def device_list(raw):
    """--devices: "auto", or a comma-separated list of names such as /gpu:0 or /cpu:1."""
    if raw == "auto":
        return raw
    names = [d.strip() for d in raw.split(",") if d.strip()]
    bad = [d for d in names if not DEVICE_NAME.match(d)]
    if not names or bad:
        raise argparse.ArgumentTypeError("%r is not a device name such as /gpu:0 or /cpu:1 (or auto)"
                                         % (bad[0] if bad else raw))
    return ",".join(names)


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    data = parser.add_argument_group("data")
    data.add_argument("--data-file", default="data/stack-overflow-data.csv", help="CSV/TSV of texts and labels")
    data.add_argument("--text-column", default="post", help="column with the texts")
    data.add_argument("--label-column", default="tags", help="column with the labels")
    data.add_argument("--sep", default=None, help="field separator (default: tab for .tsv, else comma)")
    data.add_argument("--val-file", default=None, help="validation file (default: 9%% of --data-file)")
    data.add_argument("--test-file", default=None, help="test file (default: 10%% of --data-file)")
    data.add_argument("--seed", type=non_negative_int, default=42, help="split, shuffle and init seed")
    data.add_argument("--cache-dir", default="data/cache", help="tokenized TFRecord cache")

    model = parser.add_argument_group("model")
    model.add_argument("--bert-dir", default="models/pretrained",
                       help="folder with bert_config.json, vocab.txt, bert_model.ckpt.*")
    model.add_argument("--do-lower-case", choices=("auto", "true", "false"), default="auto",
                       help="auto: lower-case when the vocab is uncased")
    model.add_argument("--max-seq-length", type=at_least(MIN_SEQ_LENGTH), default=128,
                       help="word pieces per text, [CLS] and [SEP] included")
    model.add_argument("--pooling", choices=POOLINGS, default="cls",
                       help="cls: bert's pooled [CLS] output; mean: average of the last layer "
                            "(for sentence-transformers checkpoints such as MiniLM)")
    model.add_argument("--truncate", choices=TRUNCATIONS, default="head",
                       help="head+tail keeps the first and last word pieces of long texts")

    train = parser.add_argument_group("training")
    train.add_argument("--batch-size", type=positive_int, default=32, help="examples per step (per device)")
    train.add_argument("--eval-batch-size", type=positive_int, default=64, help="examples per evaluation batch")
    train.add_argument("--learning-rate", type=positive_float, default=5e-5, help="peak learning rate (AdamW)")
    train.add_argument("--num-train-epochs", type=positive_float, default=3.0, help="passes over the training split")
    train.add_argument("--max-steps", type=non_negative_int, default=0, help="train steps (0: from the epochs)")
    train.add_argument("--warmup-proportion", type=fraction, default=0.1,
                       help="share of the steps with a rising learning rate")
    train.add_argument("--no-length-bucketing", dest="length_bucketing", action="store_false",
                       help="batch in file order instead of grouping texts of similar length")
    train.add_argument("--pad-to-max-seq-length", action="store_true",
                       help="pad every batch to --max-seq-length (the original's way; for benchmarks)")
    train.add_argument("--early-stopping-evals", type=non_negative_int, default=0,
                       help="stop after N evaluations without a lower validation loss (0: off)")

    run = parser.add_argument_group("run")
    run.add_argument("--output-dir", default="models",
                     help="checkpoints/, trained_model/ and report/ are written here")
    run.add_argument("--overwrite", action="store_true", help="delete old checkpoints and start afresh")
    run.add_argument("--eval-every-steps", type=positive_int, default=500, help="checkpoint and evaluate every N steps")
    run.add_argument("--save-summary-steps", type=positive_int, default=100, help="TensorBoard summary every N steps")
    run.add_argument("--log-every-steps", type=positive_int, default=50, help="progress line every N steps")
    run.add_argument("--keep-checkpoint-max", type=positive_int, default=3, help="newest checkpoints kept")
    run.add_argument("--devices", type=device_list, default="auto",
                     help="auto: every visible GPU (several: mirrored replicas, --batch-size each); "
                          "or a list such as /gpu:0,/gpu:1 (or /cpu:0,/cpu:1 to try it on a CPU)")
    run.add_argument("--use-amp", action="store_true", help="mixed precision (float16) with dynamic loss scaling")
    run.add_argument("--use-xla", action="store_true", help="XLA JIT compilation")
    run.add_argument("--intra-op-threads", type=non_negative_int, default=0, help="TF threads per op (0: one per core)")
    run.add_argument("--inter-op-threads", type=non_negative_int, default=0, help="ops run at once (0: TF decides)")
    run.add_argument("--skip-report", action="store_true", help="no test-split report")
    run.add_argument("--skip-onnx", action="store_true",
                     help="do not convert the best export to ONNX (model.onnx, verified on the validation texts)")
    run.add_argument("--quantize", choices=("none", "int8"), default="none",
                     help="int8: also write model.int8.onnx (dynamic quantization), kept if its validation "
                          "accuracy is within 0.5 points of fp32's; served with QUANTIZE=int8")
    args = parser.parse_args(argv)
    if args.quantize != "none" and args.skip_onnx:
        parser.error("--quantize %s quantizes the ONNX copy, which --skip-onnx turns off" % args.quantize)
    return TrainingConfig.from_args(args)


def setup_logging():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


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


def run(config):
    from ..shared.tf_compat import TF_VERSION
    from ..shared.text import TextEncoder
    from ..serving.predictor import Predictor
    from . import data, pretrained, records
    from .estimator import build_estimator, cluster_from_env, train_and_evaluate, training_devices
    from .export import AssetsWriter, export_config_for, name_signatures, serving_input_receiver_fn_builder
    from .exporter import BestCheckpointsExporter
    from .model import model_fn_builder
    from .report import tfidf_svm_baseline, write_report

    # Every check first; nothing is deleted or written until they all passed.
    base = pretrained.load(config.bert_dir, config.max_seq_length)
    do_lower_case = records.resolve_do_lower_case(config.do_lower_case, base.vocab_file, base.init_checkpoint)
    splits = data.load_splits(config.data_file, text_column=config.text_column, label_column=config.label_column,
                              sep=config.sep, val_file=config.val_file, test_file=config.test_file, seed=config.seed)
    encoder = TextEncoder(records.bert_tokenizer(base.vocab_file, do_lower_case), config.max_seq_length,
                          config.truncate)
    devices = training_devices(config.devices)
    cluster = cluster_from_env()
    if cluster is not None and config.overwrite:
        raise UserError("--overwrite deletes what the other tasks of the cluster read; clear %s before "
                        "starting the cluster instead" % config.output_dir)
    paths = check_writable_folders(config)
    if config.overwrite:
        clear_previous_run(paths)
    logging.info(describe_devices(devices) + ("; %s (TF_CONFIG)" % cluster if cluster else ""))

    record_files = {name: records.cached_records(frame, labels=splits.labels, encoder=encoder,
                                                 vocab_file=base.vocab_file, do_lower_case=do_lower_case,
                                                 cache_dir=config.cache_dir, split_name=name)
                    for name, frame in (("train", splits.train), ("val", splits.val))}
    # --batch-size is per replica: one per device, and per training task of a synchronous cluster
    # (with parameter servers each task's batch is a step of its own)
    examples_per_step = config.batch_size * max(1, len(devices)) * (
        cluster.training_tasks if cluster is not None and cluster.synchronous else 1)
    max_steps = config.max_steps or int(math.ceil(config.num_train_epochs * len(splits.train) / examples_per_step))

    model_fn = model_fn_builder(
        bert_config=base.config, num_labels=len(splits.labels), init_checkpoint=base.init_checkpoint,
        learning_rate=config.learning_rate, num_train_steps=max_steps,
        num_warmup_steps=int(max_steps * config.warmup_proportion), pooling=config.pooling, use_amp=config.use_amp,
        label_names=splits.labels)
    estimator = build_estimator(model_fn=model_fn, model_dir=paths["checkpoints"], config=config, devices=devices,
                                cluster=cluster)
    export_config = export_config_for(config, bert_config=base.config, do_lower_case=do_lower_case,
                                      num_labels=len(splits.labels), tf_version=TF_VERSION)
    serving_input_receiver_fn = serving_input_receiver_fn_builder(
        vocab_file=base.vocab_file, do_lower_case=do_lower_case, max_seq_length=config.max_seq_length,
        truncate=config.truncate)
    exporter = BestCheckpointsExporter(
        serving_input_receiver_fn, paths["trained_model"], paths["checkpoints"],
        AssetsWriter(splits.labels, base.vocab_file, export_config, paths["checkpoints"]),
        finish_export=name_signatures)
    train_input_fn = records.input_fn_builder(
        record_files["train"], batch_size=config.batch_size, is_training=True, max_seq_length=config.max_seq_length,
        length_bucketing=config.length_bucketing, pad_to_max=config.pad_to_max_seq_length, seed=config.seed,
        shard=cluster.shard if cluster is not None and not cluster.synchronous else None)
    eval_input_fn = records.input_fn_builder(record_files["val"], batch_size=config.eval_batch_size,
                                             is_training=False, max_seq_length=config.max_seq_length)
    logging.info("training %d steps of %d examples (%d labels) into %s", max_steps, examples_per_step,
                 len(splits.labels), paths["checkpoints"])
    train_and_evaluate(estimator=estimator, train_input_fn=train_input_fn, eval_input_fn=eval_input_fn,
                       exporter=exporter, max_steps=max_steps, examples_per_step=examples_per_step, config=config)
    if cluster is not None and not cluster.writes_outputs:
        logging.info("%s: training done; the evaluator exports the best model and writes the report", cluster)
        return None

    best = exporter.best()
    if best is None:
        raise UserError("no evaluation ran, so nothing was exported (is --max-steps 0?)")
    logging.info("best model: %s (validation loss %.4f at step %d)", best["export_dir"], best["loss"], best["step"])
    conversion = None
    if not config.skip_onnx:
        from .onnx_export import Conversion
        conversion = Conversion(best["export_dir"])  # tf2onnx converts in its own process meanwhile
    try:
        # Meanwhile, on the other core: the baseline (one core) and, in finish, the SavedModel's
        # answers that the ONNX copy is checked against; the report's own predictions come after,
        # from the verified copy (the SavedModel's, computed beside tf2onnx, took 64 s instead of 27).
        baseline = None if config.skip_report else tfidf_svm_baseline(splits.train, splits.test)
        if conversion is not None:
            conversion.finish(texts=list(splits.val["text"]), labels=list(splits.val["label"]), seed=config.seed,
                              quantize=config.quantize)
    finally:
        if conversion is not None:
            conversion.cancel()
    if not config.skip_report:
        predictor = Predictor(best["export_dir"])
        write_report(predictor, splits, paths["report"], baseline_accuracy=baseline)
        predictor.close()
    return best


def main(argv=None):
    config = parse_args(argv)
    setup_logging()
    return run_cli(run, config)


if __name__ == "__main__":
    sys.exit(main())
