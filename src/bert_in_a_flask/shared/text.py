"""Text -> word-piece ids, the same way in training and serving: bert's tokenizer and truncation.
Training runs bert's own tokenization module, serving its TensorFlow-free copy (wordpiece.py)."""
import functools
import re

from .errors import UserError
from . import wordpiece

TRUNCATIONS = ("head", "head+tail", "windows")
# "windows": a long text becomes overlapping windows of max_seq_length pieces, `window_stride` pieces
# apart, at most `max_windows` of them; the model's answers for them are pooled into one per text.
WINDOW_POOLINGS = ("mean", "max")
WINDOW_LOSSES = ("window", "text")  # --window-loss: per window, or on the text's pooled answer
# "How to Fine-Tune BERT for Text Classification" (Sun et al. 2019) keeps 128 head and
# 382 tail tokens of 510: the best of their truncation schemes on long documents.
HEAD_SHARE_OF_HEAD_TAIL = 128.0 / 510.0
MIN_SEQ_LENGTH = 3  # [CLS], one word piece, [SEP]


def vocab_is_cased(vocab_file):
    """True when the vocab holds upper-case word pieces (a cased model's vocab)."""
    with open(vocab_file, encoding="utf-8") as handle:
        for line in handle:
            token = line.strip()
            if not token.startswith("[") and token != token.lower():
                return True
    return False


def build_tokenizer(vocab_file, do_lower_case):
    """bert's FullTokenizer without TensorFlow (wordpiece.py; tested to give bert's ids)."""
    return wordpiece.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)


# bert's BasicTokenizer on ASCII text, as two regexes: _clean_text drops the control characters
# (all of ASCII's but tab, newline, CR, which are whitespace), and every printable ASCII character
# that is not a letter or digit is punctuation (_is_punctuation), so a token is a run of letters and
# digits or one punctuation character. No accents to strip: lower-casing is all do_lower_case does.
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ASCII_TOKEN = re.compile(r"[A-Za-z0-9]+|[!-/:-@\[-`{-~]")
WORD_CACHE_SIZE = 1 << 16  # distinct words whose word-piece ids are remembered


class TextEncoder(object):
    """One text -> `[CLS] tokens [SEP]` ids, truncated the same way in training and serving.

    The ids are bert's FullTokenizer's, computed faster: ASCII texts (nearly all titles) take the
    regex path above instead of bert's character-by-character loop, and each word's pieces are
    remembered (words repeat). tests/test_text_signature.py checks the equality on real and
    hostile texts."""

    def __init__(self, tokenizer, max_seq_length, truncate="head", window_stride=0, max_windows=1):
        if truncate not in TRUNCATIONS:
            raise UserError("--truncate must be one of %s, not %r" % (", ".join(TRUNCATIONS), truncate))
        if max_seq_length < MIN_SEQ_LENGTH:
            raise UserError("--max-seq-length must be at least %d, not %d" % (MIN_SEQ_LENGTH, max_seq_length))
        if truncate == "windows":
            check_windows(max_seq_length, window_stride, max_windows)
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.truncate = truncate
        self.window_stride, self.max_windows = window_stride, max_windows
        self._cls_sep = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])
        self._word_ids = functools.lru_cache(maxsize=WORD_CACHE_SIZE)(self._word_ids_uncached)

    def _word_ids_uncached(self, word):
        return tuple(self.tokenizer.convert_tokens_to_ids(self.tokenizer.wordpiece_tokenizer.tokenize(word)))

    def basic_tokens(self, text):
        """bert's BasicTokenizer.tokenize(text)."""
        if text.isascii():
            text = _ASCII_CONTROL.sub("", text)
            return _ASCII_TOKEN.findall(text.lower() if self.tokenizer.basic_tokenizer.do_lower_case else text)
        return self.tokenizer.basic_tokenizer.tokenize(text)

    def piece_ids(self, text):
        """bert's FullTokenizer: convert_tokens_to_ids(tokenize(text))."""
        return [i for word in self.basic_tokens(text) for i in self._word_ids(word)]

    def truncated(self, tokens):
        budget = self.max_seq_length - 2
        if len(tokens) <= budget:
            return tokens
        if self.truncate in ("head", "windows"):  # windows: the first one
            return tokens[:budget]
        head = int(round(budget * HEAD_SHARE_OF_HEAD_TAIL))
        return tokens[:head] + tokens[len(tokens) - (budget - head):]

    def encode(self, text):
        """`[CLS] pieces [SEP]`, truncated (with windows: the first window)."""
        cls_id, sep_id = self._cls_sep
        return [cls_id] + self.truncated(self.piece_ids(text)) + [sep_id]

    def encode_windows(self, text):
        """The id lists of a text: one (`encode`'s), or with "windows" each window's `[CLS] pieces [SEP]`,
        window_stride pieces apart, until one reaches the end or there are max_windows."""
        if self.truncate != "windows":
            return [self.encode(text)]
        cls_id, sep_id = self._cls_sep
        pieces = self.piece_ids(text)
        return [[cls_id] + pieces[start:start + self.max_seq_length - 2] + [sep_id]
                for start in window_starts(len(pieces), self.max_seq_length - 2, self.window_stride,
                                           self.max_windows)]


def window_starts(n_pieces, budget, stride, max_windows):
    """Where each window of `budget` pieces starts in a text of `n_pieces`: 0, stride, 2 stride, ...
    until a window reaches the end (always one, for an empty text too), at most `max_windows`."""
    starts = [0]
    while starts[-1] + budget < n_pieces and len(starts) < max_windows:
        starts.append(starts[-1] + stride)
    return starts


def check_windows(max_seq_length, window_stride, max_windows):
    """A stride of at least the window would skip pieces; no window at all would classify nothing."""
    budget = max_seq_length - 2
    if budget < 2:
        raise UserError("--truncate windows needs --max-seq-length of at least 4 (windows of 2 word pieces "
                        "or more, so that they can overlap), not %d" % max_seq_length)
    if not isinstance(window_stride, int) or not 0 < window_stride < budget:
        raise UserError("--window-stride must be between 1 and %d (under the window's %d word pieces: "
                        "--max-seq-length %d minus [CLS] and [SEP]), not %s"
                        % (budget - 1, budget, max_seq_length, window_stride))
    if not isinstance(max_windows, int) or max_windows < 1:
        raise UserError("--max-windows must be at least 1, not %s" % max_windows)
