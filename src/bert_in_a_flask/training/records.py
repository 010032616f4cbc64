"""Training records: the case check, the TFRecord cache of word-piece ids and `input_fn_builder`.

Records hold *unpadded* ids; batches are padded to their longest member at read time
(and, in training, grouped by length), so no compute is spent on padding.
"""
import hashlib
import json
import logging
import os

from ..shared.errors import UserError
from ..shared.text import vocab_is_cased
from ..shared.tf_compat import tf, tokenization
from .data import label_sets

log = logging.getLogger(__name__)

FEATURES_VERSION = 1  # bump when the record layout changes, to retire old caches
WINDOW_LENGTHS = "window_lengths"  # a per-text record's feature: how many word pieces each window has


def bert_tokenizer(vocab_file, do_lower_case):
    """bert's own FullTokenizer: the trainer's (serving runs its TensorFlow-free copy, tested equal)."""
    return tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)


def resolve_do_lower_case(setting, vocab_file, init_checkpoint=None):
    """`auto` follows the vocab; an explicit true/false must agree with it."""
    if not os.path.isfile(vocab_file):
        raise UserError("vocab file not found: %s" % vocab_file)
    cased = vocab_is_cased(vocab_file)
    if setting == "auto":
        return not cased
    lower = setting == "true"
    if lower == cased:
        raise UserError(
            "%s is %s but --do-lower-case=%s; use --do-lower-case=%s (or auto)"
            % (vocab_file, "cased" if cased else "lower-cased", setting, "false" if cased else "true"))
    try:
        tokenization.validate_case_matches_checkpoint(lower, init_checkpoint)
    except ValueError as exc:
        raise UserError(str(exc).strip().splitlines()[0])
    return lower


# --- TFRecord cache ------------------------------------------------------------------------

def cache_key(frame, vocab_file, encoder, labels, do_lower_case, label_separator=None, per_text=False):
    """Everything that changes the records: the rows, vocab, length, case, truncation, labels, layout."""
    digest = hashlib.sha256()
    digest.update(frame.to_csv(index=False).encode("utf-8"))
    with open(vocab_file, "rb") as handle:
        digest.update(handle.read())
    key = [FEATURES_VERSION, encoder.max_seq_length, do_lower_case, encoder.truncate, list(labels)]
    if label_separator is not None:  # multi-hot records (single-label keys stay as they were)
        key.append(label_separator)
    if encoder.truncate == "windows":
        key.append([encoder.window_stride, encoder.max_windows] + (["per_text"] if per_text else []))
    digest.update(json.dumps(key).encode("utf-8"))
    return digest.hexdigest()[:16]


def label_feature(row_labels, label_to_id, multi_label):
    """A row's `label_ids`: its label's index, or (multi-label) the multi-hot float vector of its labels."""
    if not multi_label:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[label_to_id[row_labels[0]]]))
    hot = [0.0] * len(label_to_id)
    for label in row_labels:
        hot[label_to_id[label]] = 1.0
    return tf.train.Feature(float_list=tf.train.FloatList(value=hot))


def int64_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def window_examples(windows, label):
    """One record per window, each with its text's labels: every window is a sample of the text."""
    for ids in windows:
        yield tf.train.Example(features=tf.train.Features(feature={
            "input_ids": int64_feature(ids), "label_ids": label}))


def text_example(windows, label):
    """One record per text (--window-loss text): its windows' ids end to end and each window's length,
    so a batch can hold whole texts and the loss can be on their pooled answers."""
    yield tf.train.Example(features=tf.train.Features(feature={
        "input_ids": int64_feature([i for ids in windows for i in ids]),
        WINDOW_LENGTHS: int64_feature([len(ids) for ids in windows]), "label_ids": label}))


def write_records(frame, labels, encoder, path, label_separator=None, per_text=False):
    """Tokenize `frame` into `path`, via a temp name so an interrupted write is never reused. With
    windows, each of a text's windows is a record of its own (or, `per_text`, one record holds them
    all); the first --max-windows bound what a very long text costs. Returns the windows' lengths."""
    label_to_id = {label: i for i, label in enumerate(labels)}
    tmp_path = "%s.tmp-%d" % (path, os.getpid())
    lengths = []
    examples = text_example if per_text else window_examples
    with tf.io.TFRecordWriter(tmp_path) as writer:
        for text, row_labels in zip(frame["text"], label_sets(frame, label_separator)):
            label = label_feature(row_labels, label_to_id, label_separator is not None)
            windows = list(encoder.encode_windows(text))
            lengths.extend(len(ids) for ids in windows)
            for example in examples(windows, label):
                writer.write(example.SerializeToString())
    os.replace(tmp_path, path)
    return lengths


def cached_records(frame, *, labels, encoder, vocab_file, do_lower_case, cache_dir, split_name,
                   label_separator=None, per_text=False):
    """Path of the split's TFRecord file, written only when no cache with the same key exists."""
    os.makedirs(cache_dir, exist_ok=True)
    key = cache_key(frame, vocab_file, encoder, labels, do_lower_case, label_separator, per_text)
    path = os.path.join(cache_dir, "%s-%s.tfrecord" % (split_name, key))
    if os.path.exists(path):
        log.info("reusing %s", path)
    else:
        lengths = write_records(frame, labels, encoder, path, label_separator, per_text)
        log.info("wrote %d %s %s to %s%s (mean %.1f word pieces, %d at the full --max-seq-length)",
                 len(lengths), split_name, "windows" if encoder.truncate == "windows" else "records", path,
                 ", one record per text" if per_text else "", sum(lengths) / max(1, len(lengths)),
                 sum(1 for n in lengths if n >= encoder.max_seq_length))
    return path


def count_records(path):
    """The number of records in a TFRecord file (a windowed split has more than its texts)."""
    return sum(1 for _ in tf.io.tf_record_iterator(path))


def count_windows(path):
    """The number of windows in a file of per-text records (write_records' per_text)."""
    return sum(len(tf.train.Example.FromString(record).features.feature[WINDOW_LENGTHS].int64_list.value)
               for record in tf.io.tf_record_iterator(path))


# --- input_fn ---------------------------------------------------------------------------

def label_spec(num_labels=None):
    """A record's `label_ids`: an int64 index, or with `num_labels` (multi-label) the multi-hot floats."""
    return (tf.FixedLenFeature([], tf.int64) if num_labels is None
            else tf.FixedLenFeature([num_labels], tf.float32))


def parsed_label(parsed, num_labels=None):
    """The label as the model_fn takes it: an int32 index, or the float32 multi-hot vector."""
    label = parsed["label_ids"]
    return tf.cast(label, tf.int32) if num_labels is None else label


def record_parser(num_labels=None):
    """Parses one record into (features, label): an int32 index, or with `num_labels` (multi-label)
    the float32 multi-hot vector."""

    def parse(serialized):
        parsed = tf.parse_single_example(serialized, {"input_ids": tf.VarLenFeature(tf.int64),
                                                      "label_ids": label_spec(num_labels)})
        input_ids = tf.cast(tf.sparse.to_dense(parsed["input_ids"]), tf.int32)
        features = {
            "input_ids": input_ids,
            "input_mask": tf.ones_like(input_ids),
            "segment_ids": tf.zeros_like(input_ids),
        }
        return features, parsed_label(parsed, num_labels)

    return parse


def text_record_parser(num_labels=None):
    """Parses one per-text record (--window-loss text) into ({"input_ids": [windows, longest window],
    "window_lengths": [windows]}, label); the model_fn turns a batch of them into rows of windows."""

    def parse(serialized):
        parsed = tf.parse_single_example(serialized, {"input_ids": tf.VarLenFeature(tf.int64),
                                                      WINDOW_LENGTHS: tf.VarLenFeature(tf.int64),
                                                      "label_ids": label_spec(num_labels)})
        flat = tf.cast(tf.sparse.to_dense(parsed["input_ids"]), tf.int32)
        lengths = tf.cast(tf.sparse.to_dense(parsed[WINDOW_LENGTHS]), tf.int32)
        windows = tf.RaggedTensor.from_row_lengths(flat, lengths).to_tensor()
        return {"input_ids": windows, WINDOW_LENGTHS: lengths}, parsed_label(parsed, num_labels)

    return parse


def bucket_boundaries(max_seq_length, shortest=4, growth=1.1):
    """Bucket edges about 10 % apart (4, 5, ..., 13, 14, 15, 17, ..., 124 for 128): a batch of
    texts from one bucket pads at most ~10 % on top of its shortest text. On the SO titles (mean 14
    word pieces) that keeps 98 % of a batch's positions real, where fixed 16-piece buckets kept 71 %."""
    edges, edge = [], float(shortest)
    while int(round(edge)) < max_seq_length:
        rounded = int(round(edge))
        if not edges or rounded > edges[-1]:  # short edges round to the same integer
            edges.append(rounded)
        edge *= growth
    return edges


def input_fn_builder(record_file, *, batch_size, is_training, max_seq_length,
                     length_bucketing=True, pad_to_max=False, seed=None, shard=None, multi_label_count=None,
                     per_text=False):
    """`input_fn` for the estimator: (features, label_ids) batches from one TFRecord file.

    Training shuffles and repeats. With `length_bucketing` batches hold texts of similar length
    (evaluation too: it sees each text once, in a different order, and its metrics are per-text
    means, so only its time changes). `pad_to_max` pads every batch to max_seq_length: the
    original's way, kept for benchmarks. `shard=(n, i)`: a training task of a cluster reads every
    n-th record from the i-th. `multi_label_count`: the number of labels of multi-hot records.
    `per_text`: records of whole texts (write_records' per_text), batched `batch_size` texts at a time
    and padded to the batch's most windows and longest window (no length buckets).
    """
    seq_shape = [max_seq_length if pad_to_max else None]
    label_shape = [] if multi_label_count is None else [multi_label_count]
    padded_shapes = ({"input_ids": seq_shape, "input_mask": seq_shape, "segment_ids": seq_shape}, label_shape)

    def input_fn(params=None, input_context=None):
        dataset = tf.data.TFRecordDataset(record_file)
        if is_training and input_context is not None and input_context.num_input_pipelines > 1:
            # a synchronous cluster: the strategy says which share of the records is this worker's
            dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        elif is_training and shard is not None and shard[0] > 1:
            dataset = dataset.shard(*shard)  # a parameter-server cluster: this task's share
        if is_training:
            dataset = dataset.shuffle(buffer_size=10000, seed=seed, reshuffle_each_iteration=True).repeat()
        if per_text:
            dataset = dataset.map(text_record_parser(multi_label_count), num_parallel_calls=2)
            return dataset.padded_batch(batch_size, padded_shapes=(
                {"input_ids": [None, None], WINDOW_LENGTHS: [None]}, label_shape)).prefetch(2)
        dataset = dataset.map(record_parser(multi_label_count), num_parallel_calls=2)
        if length_bucketing and not pad_to_max:
            boundaries = bucket_boundaries(max_seq_length)
            dataset = dataset.apply(tf.data.experimental.bucket_by_sequence_length(
                element_length_func=lambda features, label: tf.shape(features["input_ids"])[0],
                bucket_boundaries=boundaries,
                bucket_batch_sizes=[batch_size] * (len(boundaries) + 1)))
        else:
            dataset = dataset.padded_batch(batch_size, padded_shapes=padded_shapes)
        return dataset.prefetch(2)

    return input_fn
