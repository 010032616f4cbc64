"""bert's tokenizer as graph ops, for the export's raw-text signature `serve_text`.

Strings in, the serving signature's int32 ids/mask/segments out: the same word pieces and the same
truncation as shared/text.py's TextEncoder, so an engine that hosts SavedModels (TensorFlow Serving,
KServe) serves the export without our Python. tensorflow-text supplies the ops Python has and
TensorFlow lacks (NFD normalization, regex splitting, greedy word pieces); its BertTokenizer is not
used because its case folding is NFKC_Casefold, which is not bert's `str.lower` + accent stripping
(it maps full-width letters and '…', which bert keeps).

Each step mirrors one of bert's `BasicTokenizer` / `WordpieceTokenizer` (bert/tokenization.py), its
character classes built from bert's own predicates (bert_char_classes):
    invalid UTF-8            dropped (bert decodes with errors="ignore"; here U+FFFD, then dropped)
    _clean_text              NUL, U+FFFD, Cc and Cf characters dropped; whitespace -> ' '
    _tokenize_chinese_chars  spaces around CJK ideographs
    do_lower_case            str.lower (ICU full case mapping, final sigma included; the characters
                             whose case TensorFlow's ICU maps otherwise than this Python are mapped
                             first, see lower_case_fixups), NFD, Mn dropped
    _run_split_on_punc       spaces around ASCII punctuation and Unicode P* characters
    whitespace_tokenize      split on what str.split() splits on
    WordpieceTokenizer       words over 200 characters -> [UNK]; greedy longest-match-first "##" pieces
"""
import functools
import sys
import unicodedata

import tensorflow_text

from ..shared.export_contract import WINDOW_TEXT
from ..shared.text import HEAD_SHARE_OF_HEAD_TAIL
from ..shared.tf_compat import tf, tokenization

MAX_CHARS_PER_WORD = tokenization.WordpieceTokenizer(vocab={}).max_input_chars_per_word  # 200
UTF8_BYTES_PER_CHAR = 4


def all_characters():
    return tuple(chr(code) for code in range(sys.maxunicode + 1) if not 0xD800 <= code < 0xE000)


def char_class(predicate, chars):
    """An RE2 character class of every character for which `predicate` holds, spelled out as ranges.
    The classes come from bert's own predicates on this Python's Unicode tables (those training used):
    RE2's own \\p{..} tables are newer (TF 2.15 knows Unicode 15, Python 3.11 14) and would disagree
    on the characters assigned in between."""
    codes = [ord(char) for char in filter(predicate, chars)]  # `chars`: all_characters(), made once
    ranges = []
    for code in codes:
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "[%s]" % "".join("\\x{%X}" % a if a == b else "\\x{%X}-\\x{%X}" % (a, b) for a, b in ranges)


@functools.lru_cache(maxsize=1)
def bert_char_classes():
    """The RE2 classes of bert's BasicTokenizer steps (see the module docstring)."""
    basic = tokenization.BasicTokenizer(do_lower_case=True)
    chars = all_characters()
    return {
        # _clean_text: dropped (NUL, U+FFFD, _is_control: Cc and Cf but tab, newline, CR) and made ' ' (_is_whitespace)
        "dropped": char_class(lambda c: c in "\x00\ufffd" or tokenization._is_control(c), chars),
        "whitespace": char_class(tokenization._is_whitespace, chars),
        "cjk": char_class(lambda c: basic._is_chinese_char(ord(c)), chars),
        "accent": char_class(lambda c: unicodedata.category(c) == "Mn", chars),  # _run_strip_accents
        "punctuation": char_class(tokenization._is_punctuation, chars),
        "split": char_class(str.isspace, chars),  # whitespace_tokenize is str.split()
    }


def basic_tokens(texts, do_lower_case):
    """[batch] strings -> [batch, (words)] ragged strings, as bert's BasicTokenizer splits them."""
    classes = bert_char_classes()
    texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
    texts = tf.strings.regex_replace(texts, classes["dropped"], "")
    texts = tf.strings.regex_replace(texts, classes["whitespace"], " ")
    texts = tf.strings.regex_replace(texts, "(%s)" % classes["cjk"], r" \1 ")
    if do_lower_case:
        for upper, lower in lower_case_fixups():
            texts = tf.strings.regex_replace(texts, r"\x{%X}" % ord(upper), lower)
        texts = tf.strings.lower(texts, encoding="utf-8")
        texts = tensorflow_text.normalize_utf8(texts, "NFD")
        texts = tf.strings.regex_replace(texts, classes["accent"], "")
    texts = tf.strings.regex_replace(texts, "(%s)" % classes["punctuation"], r" \1 ")
    return tensorflow_text.regex_split(texts, classes["split"] + "+")


@functools.lru_cache(maxsize=1)
def lower_case_fixups():
    """(character, Python's lower case of it) wherever TensorFlow's `strings.lower` says otherwise.
    TF 1.15's ICU maps 28 characters wrongly ('ẞ' -> 'Ṿ', Greek capitals with prosgegrammeni); TF 2.15's
    predates 40 letters that Python 3.11 knows. Measured here, once per process, over every character."""
    cased = [char for char in all_characters() if char.lower() != char]
    with tf.Graph().as_default(), tf.Session() as session:
        lowered = session.run(tf.strings.lower([char.encode("utf-8") for char in cased], encoding="utf-8"))
    return tuple((char, char.lower()) for char, got in zip(cased, lowered) if got.decode("utf-8") != char.lower())


def vocab_table(vocab_file):
    """word piece -> id (-1 when absent), from bert's own vocab reader; the vocab becomes constants of
    the graph, so the SavedModel needs no asset file to be copied along."""
    vocab = tokenization.load_vocab(vocab_file)
    keys = tf.constant(list(vocab.keys()), tf.string)
    values = tf.constant(list(vocab.values()), tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)


def word_piece_ids(words, table):
    """[batch, (words)] -> [batch, (pieces)] int64 ids, as bert's WordpieceTokenizer (whole word [UNK]
    when it does not split into vocab pieces or is longer than MAX_CHARS_PER_WORD characters)."""
    too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
    words = words.with_flat_values(tf.where(too_long, tf.fill(tf.shape(too_long), "[UNK]"), words.flat_values))
    tokenizer = tensorflow_text.WordpieceTokenizer(
        table, suffix_indicator="##", max_bytes_per_word=MAX_CHARS_PER_WORD * UTF8_BYTES_PER_CHAR,
        token_out_type=tf.int64, unknown_token="[UNK]")
    pieces = tokenizer.tokenize(words)  # [batch, (words), (pieces)]
    return tf.RaggedTensor.from_row_splits(pieces.values.values, tf.gather(pieces.values.row_splits, pieces.row_splits))


def truncated(pieces, budget, truncate):
    """Keep at most `budget` pieces per row: the first ones ("head"), or the first
    HEAD_SHARE_OF_HEAD_TAIL of them and the last ones ("head+tail"), as TextEncoder.truncated."""
    lengths = pieces.row_lengths()
    kept = tf.minimum(lengths, budget)
    head = budget if truncate == "head" else int(round(budget * HEAD_SHARE_OF_HEAD_TAIL))
    positions = tf.ragged.range(kept)  # 0..kept-1 per row
    rows, j = positions.value_rowids(), positions.flat_values
    skipped = tf.gather(lengths - kept, rows)  # pieces dropped from the middle of that row
    source = tf.gather(pieces.row_splits[:-1], rows) + j + tf.where(j >= head, skipped, tf.zeros_like(j))
    return tf.RaggedTensor.from_value_rowids(tf.gather(pieces.flat_values, source), rows,
                                             nrows=pieces.nrows()), kept


def windows(pieces, budget, stride, max_windows):
    """Cut each row into windows of at most `budget` pieces, `stride` apart, until one reaches the row's
    end, at most `max_windows` (an empty row: one empty window), as TextEncoder.encode_windows does.
    Returns (the windows as rows, their lengths, which row each window is of)."""
    lengths = pieces.row_lengths()
    more = tf.maximum(tf.zeros_like(lengths), (lengths - budget + stride - 1) // stride)  # windows after the first
    count = tf.minimum(1 + more, max_windows)
    per_row = tf.ragged.range(count)  # window k of each row
    owner, k = per_row.value_rowids(), per_row.flat_values
    start = k * stride
    kept = tf.maximum(tf.minimum(tf.cast(budget, tf.int64), tf.gather(lengths, owner) - start), 0)
    positions = tf.ragged.range(kept)
    window, j = positions.value_rowids(), positions.flat_values
    source = tf.gather(tf.gather(pieces.row_splits[:-1], owner) + start, window) + j
    rows = tf.RaggedTensor.from_value_rowids(tf.gather(pieces.flat_values, source), window,
                                             nrows=tf.shape(owner, out_type=tf.int64)[0])
    return rows, kept, owner


def text_features(texts, *, vocab_file, do_lower_case, max_seq_length, truncate, window_stride=0, max_windows=1):
    """[batch] strings -> the serving signature's int32 input_ids, input_mask, segment_ids, each
    [batch, longest in the batch]: `[CLS] pieces [SEP]`, zero-padded like the Python path pads. With
    "windows" the rows are the texts' windows, and WINDOW_TEXT says which text each is of."""
    table = vocab_table(vocab_file)
    pieces = word_piece_ids(basic_tokens(texts, do_lower_case), table)
    extra = {}
    if truncate == "windows":
        pieces, kept, owner = windows(pieces, max_seq_length - 2, window_stride, max_windows)
        extra[WINDOW_TEXT] = tf.cast(owner, tf.int32)
    else:
        pieces, kept = truncated(pieces, max_seq_length - 2, truncate)
    cls_id, sep_id = tf.unstack(table.lookup(tf.constant(["[CLS]", "[SEP]"])))
    body = pieces.to_tensor(default_value=0)
    batch = tf.shape(body)[0]
    width = tf.shape(body)[1] + 2
    ids = tf.concat([tf.fill([batch, 1], cls_id), body, tf.zeros([batch, 1], tf.int64)], axis=1)
    ids += tf.one_hot(kept + 1, width, on_value=sep_id, off_value=tf.constant(0, tf.int64), dtype=tf.int64)
    mask = tf.sequence_mask(kept + 2, width, dtype=tf.int32)
    return dict({"input_ids": tf.cast(ids, tf.int32), "input_mask": mask, "segment_ids": tf.zeros_like(mask)},
                **extra)
