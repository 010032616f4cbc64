"""Text -> word-piece ids, the same way in training and serving: bert's tokenizer and truncation."""
from .errors import UserError
from .tf_compat import tokenization

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
    return tokenization.FullTokenizer(vocab_file=vocab_file, do_lower_case=do_lower_case)


class TextEncoder(object):
    """One text -> `[CLS] tokens [SEP]` ids, truncated the same way in training and serving."""

    def __init__(self, tokenizer, max_seq_length, truncate="head"):
        if truncate not in TRUNCATIONS:
            raise UserError("--truncate must be one of %s, not %r" % (", ".join(TRUNCATIONS), truncate))
        if max_seq_length < MIN_SEQ_LENGTH:
            raise UserError("--max-seq-length must be at least %d, not %d" % (MIN_SEQ_LENGTH, max_seq_length))
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.truncate = truncate
        self._cls_sep = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])

    def truncated(self, tokens):
        budget = self.max_seq_length - 2
        if len(tokens) <= budget:
            return tokens
        if self.truncate == "head":
            return tokens[:budget]
        head = int(round(budget * HEAD_SHARE_OF_HEAD_TAIL))
        return tokens[:head] + tokens[len(tokens) - (budget - head):]

    def encode(self, text):
        tokens = self.truncated(self.tokenizer.tokenize(text))
        cls_id, sep_id = self._cls_sep
        return [cls_id] + self.tokenizer.convert_tokens_to_ids(tokens) + [sep_id]
