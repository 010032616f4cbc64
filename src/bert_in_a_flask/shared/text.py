"""Text -> word-piece ids, the same way in training and serving: bert's tokenizer and truncation.
Training runs bert's own tokenization module, serving its TensorFlow-free copy (wordpiece.py)."""
import functools
import re

from .errors import UserError
from . import wordpiece

TRUNCATIONS = ("head", "head+tail")
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

    def __init__(self, tokenizer, max_seq_length, truncate="head"):
        if truncate not in TRUNCATIONS:
            raise UserError("--truncate must be one of %s, not %r" % (", ".join(TRUNCATIONS), truncate))
        if max_seq_length < MIN_SEQ_LENGTH:
            raise UserError("--max-seq-length must be at least %d, not %d" % (MIN_SEQ_LENGTH, max_seq_length))
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.truncate = truncate
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
        if self.truncate == "head":
            return tokens[:budget]
        head = int(round(budget * HEAD_SHARE_OF_HEAD_TAIL))
        return tokens[:head] + tokens[len(tokens) - (budget - head):]

    def encode(self, text):
        cls_id, sep_id = self._cls_sep
        return [cls_id] + self.truncated(self.piece_ids(text)) + [sep_id]
