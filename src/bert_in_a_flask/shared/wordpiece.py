"""bert's tokenizer without TensorFlow: the `FullTokenizer` of google-research/bert's tokenization.py
(Apache 2.0), its default options, for serving.

Why not bert's own module: it imports TensorFlow (for `tf.gfile`, to read the vocab) and absl
flags, 2-5 s and ~230 MB before a model is loaded, in a process that runs onnxruntime. Why not HF
`tokenizers`' WordPiece with a BERT normalizer: measured against bert's FullTokenizer on the SO
titles, the hostile strings and every character up to U+2FFFF alone and inside a word (230,403
texts), it gave other ids for 8,478 of them with MiniLM's uncased vocab and 7,838 with a cased one
(lower-casing that looks at context, such as Greek's final sigma; private-use and other characters
it drops where bert keeps them as [UNK]). A model must see the ids it was trained on, so this module
follows bert's code step by step; tests compare it with bert's FullTokenizer on those same texts.
The trainer keeps bert's own tokenization (training/records.py); `shared.text.TextEncoder` runs either.
"""
import collections
import unicodedata

UNK_TOKEN = "[UNK]"
MAX_INPUT_CHARS_PER_WORD = 200  # bert's WordpieceTokenizer default


def load_vocab(vocab_file):
    """token -> id, as bert-tensorflow's load_vocab: one token per line, stripped; a repeated token is
    skipped and does not count, so the ids are the distinct tokens' ranks."""
    vocab = collections.OrderedDict()
    with open(vocab_file, encoding="utf-8", newline="\n") as reader:  # lines end at "\n" only, as tf.gfile's
        for line in reader:
            token = line.strip()
            if token not in vocab:
                vocab[token] = len(vocab)
    return vocab


def whitespace_tokenize(text):
    text = text.strip()
    return text.split() if text else []


def is_whitespace(char):
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def is_control(char):
    return char not in "\t\n\r" and unicodedata.category(char) in ("Cc", "Cf")


def is_punctuation(char):
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True  # all non-letter/number ASCII, though "^$`" are not Unicode punctuation
    return unicodedata.category(char).startswith("P")


def is_chinese_char(code):
    """A CJK Unified Ideograph (the blocks bert lists), written as words of one character each."""
    return (0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2A6DF
            or 0x2A700 <= code <= 0x2B73F or 0x2B740 <= code <= 0x2B81F or 0x2B820 <= code <= 0x2CEAF
            or 0xF900 <= code <= 0xFAFF or 0x2F800 <= code <= 0x2FA1F)


class BasicTokenizer(object):
    """Cleaning, CJK splitting, lower-casing and accent stripping (uncased), punctuation splitting."""

    def __init__(self, do_lower_case=True):
        self.do_lower_case = do_lower_case

    def tokenize(self, text):
        text = self._tokenize_chinese_chars(self._clean_text(text))
        split_tokens = []
        for token in whitespace_tokenize(text):
            if self.do_lower_case:
                token = self._strip_accents(token.lower())
            split_tokens.extend(self._split_on_punctuation(token))
        return whitespace_tokenize(" ".join(split_tokens))

    @staticmethod
    def _strip_accents(text):
        return "".join(char for char in unicodedata.normalize("NFD", text) if unicodedata.category(char) != "Mn")

    @staticmethod
    def _split_on_punctuation(text):
        output, start_new_word = [], True
        for char in text:
            if is_punctuation(char):
                output.append([char])
                start_new_word = True
            else:
                if start_new_word:
                    output.append([])
                start_new_word = False
                output[-1].append(char)
        return ["".join(chars) for chars in output]

    @staticmethod
    def _tokenize_chinese_chars(text):
        return "".join(" %s " % char if is_chinese_char(ord(char)) else char for char in text)

    @staticmethod
    def _clean_text(text):
        output = []
        for char in text:
            if char in "\x00\ufffd" or is_control(char):
                continue
            output.append(" " if is_whitespace(char) else char)
        return "".join(output)


class WordpieceTokenizer(object):
    """Greedy longest-match-first word pieces; a word with no full match is one [UNK]."""

    def __init__(self, vocab, unk_token=UNK_TOKEN, max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD):
        self.vocab, self.unk_token, self.max_input_chars_per_word = vocab, unk_token, max_input_chars_per_word

    def tokenize(self, text):
        output_tokens = []
        for token in whitespace_tokenize(text):
            if len(token) > self.max_input_chars_per_word:
                output_tokens.append(self.unk_token)
                continue
            sub_tokens, start = [], 0
            while start < len(token):
                end, piece = len(token), None
                while start < end:
                    candidate = token[start:end] if start == 0 else "##" + token[start:end]
                    if candidate in self.vocab:
                        piece = candidate
                        break
                    end -= 1
                if piece is None:
                    sub_tokens = None
                    break
                sub_tokens.append(piece)
                start = end
            output_tokens.extend(sub_tokens if sub_tokens is not None else [self.unk_token])
        return output_tokens


class FullTokenizer(object):
    """bert's FullTokenizer: the same attributes and methods the TextEncoder uses."""

    def __init__(self, vocab_file, do_lower_case=True):
        self.vocab = load_vocab(vocab_file)
        self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
        self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)

    def tokenize(self, text):
        return [piece for token in self.basic_tokenizer.tokenize(text)
                for piece in self.wordpiece_tokenizer.tokenize(token)]

    def convert_tokens_to_ids(self, tokens):
        return [self.vocab[token] for token in tokens]
