"""`TrainingConfig`: the trainer's settings, built once from the command line and passed by keyword
to the stages (data, records, model_fn, estimator, exporter, report). Defaults live in cli.py's
flags, the one place a user sees them (`--help`)."""
import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class TrainingConfig(object):
    # data
    data_file: str
    text_column: str
    label_column: str
    label_separator: Optional[str]  # several labels per row, joined by it (None: one label per row)
    sep: Optional[str]
    val_file: Optional[str]
    test_file: Optional[str]
    seed: int
    cache_dir: str
    # model
    bert_dir: str
    do_lower_case: str  # auto | true | false, resolved against the vocab
    max_seq_length: int
    pooling: str
    truncate: str
    window_stride: int  # --truncate windows (0 otherwise)
    max_windows: int
    window_pooling: str
    window_loss: str  # window | text: what the training loss is on (--truncate windows)
    # training
    batch_size: int  # per device
    eval_batch_size: int
    learning_rate: float
    num_train_epochs: float
    max_steps: int  # 0: from the epochs
    warmup_proportion: float
    length_bucketing: bool
    pad_to_max_seq_length: bool
    early_stopping_evals: int
    class_weights: str  # none | balanced | a JSON file {label: weight} (class_weights.py)
    # run
    output_dir: str
    overwrite: bool
    eval_every_steps: int
    save_summary_steps: int
    log_every_steps: int
    keep_checkpoint_max: int
    devices: str  # auto | comma-separated device names
    use_amp: bool
    use_xla: bool
    intra_op_threads: int
    inter_op_threads: int
    skip_report: bool
    skip_onnx: bool
    quantize: str  # none | int8 (onnx_quantize.QUANTIZATIONS)
    calibrate: str  # temperature | none (shared/calibration.CALIBRATIONS)
    confidence_keeps: float  # the share of validation texts the confidence floor keeps

    @classmethod
    def from_args(cls, args):
        return cls(**vars(args))
