"""DATA LOADING: read the CSV/TSV, validate it, clean it, split it, list the labels."""
import logging
import math
import os
from collections import namedtuple

import pandas as pd
from sklearn.model_selection import train_test_split

from ..shared.errors import UserError
from ..shared.multilabel import split_labels

log = logging.getLogger(__name__)

# `label_separator`: None for one label per row; else each frame's `label` holds the row's labels,
# sorted and joined by it (label_sets() splits them again).
Splits = namedtuple("Splits", "train val test labels label_separator", defaults=(None,))

# 81/9/10: a tenth held out for the test report, a tenth of the rest for validation.
TEST_FRACTION = 0.10
VAL_FRACTION_OF_REST = 0.10
MIN_ROWS_PER_CLASS = 3  # one row each for train, val and test


def read_table(path, text_column, label_column, sep=None):
    """Read one CSV/TSV into a frame with columns `text` and `label` (as strings)."""
    if not os.path.isfile(path):
        raise UserError("data file not found: %s" % path)
    sep = sep or ("\t" if path.endswith((".tsv", ".tab")) else ",")
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise UserError("cannot parse %s: %s" % (path, str(exc).splitlines()[0]))
    for column in (text_column, label_column):
        if column not in frame.columns:
            raise UserError(
                "%s has no column %r (columns: %s; pick others with --text-column/--label-column/--sep)"
                % (path, column, ", ".join(map(str, frame.columns)))
            )
    frame = frame[[text_column, label_column]].rename(columns={text_column: "text", label_column: "label"})
    return _drop_unusable_rows(frame, path)


def _drop_unusable_rows(frame, path):
    frame = frame.copy()
    frame["text"] = frame["text"].fillna("").str.strip()
    frame["label"] = frame["label"].fillna("").str.strip()
    empty_text = frame["text"] == ""
    missing_label = frame["label"] == ""
    if empty_text.any() or missing_label.any():
        log.warning("%s: dropped %d rows with empty text and %d with a missing label",
                    path, int(empty_text.sum()), int((missing_label & ~empty_text).sum()))
    return frame[~empty_text & ~missing_label].reset_index(drop=True)


def load_splits(train_file, *, text_column="post", label_column="tags", sep=None,
                val_file=None, test_file=None, seed=42, label_separator=None):
    """Train/val/test frames and the ordered label list.

    Without --val-file/--test-file the train file is split 81/9/10, stratified by label (at random
    with `label_separator`: a row's label set is too rare a thing to stratify by).
    """
    def read(path):
        table = read_table(path, text_column, label_column, sep)
        return table if label_separator is None else _joined_label_sets(table, path, label_separator)

    if label_separator is not None:
        _require_separator_used(read_table(train_file, text_column, label_column, sep), train_file,
                                label_column, label_separator)
    frame = read(train_file)
    _require_two_classes(sorted(set().union(*label_sets(frame, label_separator))), train_file)
    split = _split_at_random if label_separator is not None else _split_by_label
    carved = [fraction for fraction, given in ((TEST_FRACTION, test_file), (VAL_FRACTION_OF_REST, val_file))
              if not given]
    if label_separator is not None and _rows_left(len(frame), carved) < 1:  # stratified: checked per split
        raise UserError("%s: %d row(s) are too few to split off validation and test rows "
                        "(add rows, or pass --val-file and --test-file)" % (train_file, len(frame)))
    test = _require_rows(read(test_file), test_file, "--test-file") if test_file else None
    if test is None:
        frame, test = split(frame, TEST_FRACTION, seed, train_file, "test")
    val = _require_rows(read(val_file), val_file, "--val-file") if val_file else None
    if val is None:
        frame, val = split(frame, VAL_FRACTION_OF_REST, seed, train_file, "validation")
    labels = sorted(set().union(*label_sets(frame, label_separator)))
    for name, part in (("validation", val), ("test", test)):
        unknown = sorted(set().union(*label_sets(part, label_separator)) - set(labels))
        if unknown:
            hint = (" (a label on one or two rows can land outside the training split: drop it, or pass "
                    "--val-file and --test-file)" if label_separator is not None and not (val_file and test_file)
                    else "")
            raise UserError("%s split has labels never seen in training: %s%s"
                            % (name, ", ".join(unknown[:5]), hint))
    splits = Splits(*(p.reset_index(drop=True) for p in (frame, val, test)), labels=labels,
                    label_separator=label_separator)
    log.info("data: %d train, %d val, %d test rows, %d labels%s",
             len(splits.train), len(splits.val), len(splits.test), len(labels),
             " (several per row, split on %r)" % label_separator if label_separator is not None else "")
    return splits


def label_sets(frame, label_separator):
    """Each row's labels as a list (one each without a separator)."""
    if label_separator is None:
        return [[label] for label in frame["label"]]
    return [label.split(label_separator) for label in frame["label"]]


def _split_by_label(frame, fraction, seed, path, part):
    """`frame` less a stratified `fraction` of it, and that fraction (the `part` split)."""
    _require_rows_per_class(frame, path)
    n_classes = frame["label"].nunique()
    held_out = _held_out_rows(len(frame), fraction)
    if min(held_out, len(frame) - held_out) < n_classes:  # a stratified split gives every class a row
        raise UserError("%s: %d rows of %d classes split %d / %d for the %s split, and each part needs a row "
                        "per class (add rows, or pass --val-file and --test-file)"
                        % (path, len(frame), n_classes, len(frame) - held_out, held_out, part))
    return train_test_split(frame, test_size=fraction, random_state=seed, stratify=frame["label"])


def _split_at_random(frame, fraction, seed, path, part):
    return train_test_split(frame, test_size=fraction, random_state=seed)


def _held_out_rows(n_rows, fraction):
    """The rows train_test_split holds out for a float test_size: rounded up."""
    return int(math.ceil(fraction * n_rows))


def _rows_left(n_rows, fractions):
    """The training rows left after holding out each of `fractions` in turn."""
    for fraction in fractions:
        n_rows -= _held_out_rows(n_rows, fraction)
    return n_rows


def _require_rows(frame, path, flag):
    """A validation or test file with no rows cannot be scored: refused before --overwrite deletes anything."""
    if not len(frame):
        raise UserError("%s %s has no rows (after dropping empty ones)" % (flag, path))
    return frame


def _require_separator_used(frame, path, label_column, separator):
    """--label-separator that no row uses is a mistake (a wrong character, or a single-label file)."""
    if not frame["label"].str.contains(separator, regex=False).any():
        raise UserError("--label-separator %r never occurs in column %r of %s (a single-label file? then "
                        "leave --label-separator out)" % (separator, label_column, path))


def _joined_label_sets(frame, path, separator):
    """`label` rewritten as the row's labels, sorted, duplicates dropped, joined by `separator`; a row
    with an empty label between separators is refused (a typo that would silently drop a label)."""
    joined = []
    for raw in frame["label"]:
        parts = split_labels(raw, separator)
        if "" in parts:
            raise UserError("%s: a row's labels %r hold an empty label after splitting on --label-separator %r"
                            % (path, raw, separator))
        joined.append(separator.join(sorted(set(parts))))
    return frame.assign(label=joined)


def _require_two_classes(labels, path):
    if len(labels) < 2:
        raise UserError("%s has %d distinct label(s) after cleaning; classification needs at least 2"
                        % (path, len(labels)))


def _require_rows_per_class(frame, path):
    counts = frame["label"].value_counts()
    too_small = counts[counts < MIN_ROWS_PER_CLASS]
    if len(too_small):
        label, count = too_small.index[0], int(too_small.iloc[0])
        raise UserError(
            "%s: class %r has %d row(s); a stratified split needs at least %d per class "
            "(add rows, drop the class, or pass --val-file and --test-file)"
            % (path, label, count, MIN_ROWS_PER_CLASS))


