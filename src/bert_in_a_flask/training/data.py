"""DATA LOADING: read the CSV/TSV, validate it, clean it, split it, list the labels."""
import logging
import os
from collections import namedtuple

import pandas as pd
from sklearn.model_selection import train_test_split

from ..shared.errors import UserError

log = logging.getLogger(__name__)

Splits = namedtuple("Splits", "train val test labels")

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
                val_file=None, test_file=None, seed=42):
    """Train/val/test frames and the ordered label list.

    Without --val-file/--test-file the train file is split 81/9/10, stratified by label.
    """
    frame = read_table(train_file, text_column, label_column, sep)
    _require_two_classes(frame, train_file)
    test = read_table(test_file, text_column, label_column, sep) if test_file else None
    if test is None:
        _require_rows_per_class(frame, train_file)
        frame, test = train_test_split(frame, test_size=TEST_FRACTION, random_state=seed,
                                       stratify=frame["label"])
    val = read_table(val_file, text_column, label_column, sep) if val_file else None
    if val is None:
        _require_rows_per_class(frame, train_file)
        frame, val = train_test_split(frame, test_size=VAL_FRACTION_OF_REST, random_state=seed,
                                      stratify=frame["label"])
    labels = sorted(frame["label"].unique())
    for name, part in (("validation", val), ("test", test)):
        unknown = sorted(set(part["label"]) - set(labels))
        if unknown:
            raise UserError("%s split has labels never seen in training: %s" % (name, ", ".join(unknown[:5])))
    splits = Splits(*(p.reset_index(drop=True) for p in (frame, val, test)), labels=labels)
    log.info("data: %d train, %d val, %d test rows, %d labels",
             len(splits.train), len(splits.val), len(splits.test), len(labels))
    return splits


def _require_two_classes(frame, path):
    n_classes = frame["label"].nunique()
    if n_classes < 2:
        raise UserError("%s has %d distinct label(s) after cleaning; classification needs at least 2"
                        % (path, n_classes))


def _require_rows_per_class(frame, path):
    counts = frame["label"].value_counts()
    too_small = counts[counts < MIN_ROWS_PER_CLASS]
    if len(too_small):
        label, count = too_small.index[0], int(too_small.iloc[0])
        raise UserError(
            "%s: class %r has %d row(s); a stratified split needs at least %d per class "
            "(add rows, drop the class, or pass --val-file and --test-file)"
            % (path, label, count, MIN_ROWS_PER_CLASS))


