"""Fine-tune a Google-format BERT checkpoint for text classification (tf.estimator).

    python src/train.py --data-file data/stack-overflow-data.csv --bert-dir models/pretrained

Writes checkpoints and TensorBoard logs to <output-dir>/checkpoints, the best model by
validation loss to <output-dir>/trained_model/<timestamp>, a test report to <output-dir>/report.
Rerunning continues from the newest checkpoint; --overwrite starts afresh.
"""
import argparse
import logging
import re
import sys

from ..shared.cli import ArgumentParser, at_least, fraction, non_negative_int, positive_float, positive_int, share
from ..shared.calibration import CALIBRATIONS, CONFIDENCE_KEEPS
from ..shared.errors import UserError, run_cli
from ..shared.export_contract import POOLINGS
from ..shared.text import MIN_SEQ_LENGTH, TRUNCATIONS, WINDOW_LOSSES, WINDOW_POOLINGS, check_windows
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
    # No shortened flags: the tools that pass trainer flags on (tools/bench_results.py) match them by name.
    parser = ArgumentParser(description=__doc__, allow_abbrev=False)
    data = parser.add_argument_group("data")
    data.add_argument("--data-file", default="data/stack-overflow-data.csv", help="CSV/TSV of texts and labels")
    data.add_argument("--text-column", default="post", help="column with the texts")
    data.add_argument("--label-column", default="tags", help="column with the labels")
    data.add_argument("--label-separator", default=None, metavar="SEP",
                      help="several labels per text, joined by SEP in the label column (e.g. 'python|pandas'): "
                           "sigmoid outputs, binary cross-entropy and a decision threshold per label")
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
                       help="head+tail keeps the first and last word pieces of long texts; windows cuts them "
                            "into overlapping windows of --max-seq-length, each trained on with the text's label, "
                            "their answers pooled per text")
    model.add_argument("--window-stride", type=positive_int, default=None,
                       help="--truncate windows: word pieces between window starts (default: half a window)")
    model.add_argument("--max-windows", type=positive_int, default=None,
                       help="--truncate windows: windows per text at most, the first ones (default: 8)")
    model.add_argument("--window-pooling", choices=WINDOW_POOLINGS, default=None,
                       help="--truncate windows: a text's answer from its windows' by the mean (default) or the "
                            "max of each label's log-probability (multi-label: mean logit, or max probability)")
    model.add_argument("--window-loss", choices=WINDOW_LOSSES, default=None,
                       help="--truncate windows: window (default) trains on every window with its text's labels; "
                            "text pools a text's windows as prediction does and trains on the pooled answer "
                            "(--batch-size and --eval-batch-size then count texts, so a batch holds up to "
                            "--max-windows times as many windows; no length buckets)")

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
    train.add_argument("--class-weights", default="none", metavar="none|balanced|FILE",
                       help="weighted cross-entropy for imbalanced classes: balanced (n / (k n_c) per label) or a "
                            "JSON file {label: weight} (labels it leaves out weigh 1)")
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
    run.add_argument("--calibrate", choices=CALIBRATIONS, default="temperature",
                     help="temperature: fit one temperature on the validation split and bake it into the export "
                          "(calibrated probabilities on every path; labels unchanged), with the confidence floor "
                          "and conformal quantiles; none: the raw softmax, no floor, no prediction sets. With "
                          "--label-separator it tunes each label's decision threshold on the validation split "
                          "instead (none: 0.5 for every label)")
    run.add_argument("--confidence-keeps", type=share, default=None,
                     help="the confidence floor keeps this share of validation texts (the rest: prediction null; "
                          "default %g)" % CONFIDENCE_KEEPS)
    args = parser.parse_args(argv)
    resolve_window_flags(parser, args)
    resolve_confidence_keeps(parser, args)
    if args.label_separator == "":
        parser.error("--label-separator must not be empty")
    if args.window_loss == "text" and args.pad_to_max_seq_length:
        parser.error("--pad-to-max-seq-length pads windows one by one, which --window-loss text batches as texts")
    if args.quantize != "none" and args.skip_onnx:
        parser.error("--quantize %s quantizes the ONNX copy, which --skip-onnx turns off" % args.quantize)
    return TrainingConfig.from_args(args)


WINDOW_DEFAULTS = {"window_stride": None, "max_windows": 8, "window_pooling": "mean",
                   "window_loss": "window"}  # stride: half a window


def resolve_confidence_keeps(parser, args):
    """--confidence-keeps' value, refused where no floor is chosen (as a window flag is without windows)."""
    if args.confidence_keeps is None:
        args.confidence_keeps = CONFIDENCE_KEEPS
    elif args.calibrate == "none":
        parser.error("--confidence-keeps sets the confidence floor, which --calibrate none does not choose")
    elif args.label_separator is not None:
        parser.error("--confidence-keeps sets the confidence floor, which a multi-label model does not have "
                     "(--label-separator: each label has its own threshold)")


def resolve_window_flags(parser, args):
    """The window flags' values: their defaults with --truncate windows (checked), else refused when given."""
    if args.truncate != "windows":
        given = [name for name in WINDOW_DEFAULTS if getattr(args, name) is not None]
        if given:
            parser.error("--%s applies to --truncate windows (this run truncates %s)"
                         % (given[0].replace("_", "-"), args.truncate))
        args.window_stride, args.max_windows, args.window_pooling, args.window_loss = 0, 1, "mean", "window"
        return
    for name, default in WINDOW_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.window_stride is None:
        args.window_stride = max(1, (args.max_seq_length - 2) // 2)
    try:
        check_windows(args.max_seq_length, args.window_stride, args.max_windows)
    except UserError as exc:
        parser.error(str(exc))


def setup_logging():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def run(config):
    """Train, export and report (pipeline.py); imported here so a bad flag is refused before TensorFlow loads."""
    from .pipeline import train
    return train(config)


def main(argv=None):
    config = parse_args(argv)
    setup_logging()
    return run_cli(run, config)


if __name__ == "__main__":
    sys.exit(main())
