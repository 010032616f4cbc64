"""The base model: a Google-format BERT folder (bert_config.json, vocab.txt, bert_model.ckpt.*),
checked up front so a bad download fails with one line naming the file."""
import os
from collections import namedtuple

from ..shared.errors import UserError
from .model import load_bert_config
from ..shared.tf_compat import tf

BaseModel = namedtuple("BaseModel", "config vocab_file init_checkpoint")
WORD_EMBEDDINGS = "bert/embeddings/word_embeddings"


def _count_lines(path):
    with open(path, encoding="utf-8") as handle:
        return sum(1 for _ in handle)


def load(bert_dir, max_seq_length):
    config_file = os.path.join(bert_dir, "bert_config.json")
    vocab_file = os.path.join(bert_dir, "vocab.txt")
    init_checkpoint = os.path.join(bert_dir, "bert_model.ckpt")
    for path in (config_file, vocab_file, init_checkpoint + ".index"):
        if not os.path.isfile(path):
            raise UserError("base model file not found: %s (see `make download_base_bert`)" % path)
    config = load_bert_config(config_file)
    if max_seq_length > config.max_position_embeddings:
        raise UserError("--max-seq-length %d is above max_position_embeddings %d of %s"
                        % (max_seq_length, config.max_position_embeddings, config_file))
    try:
        reader = tf.train.load_checkpoint(init_checkpoint)
        shapes = reader.get_variable_to_shape_map()
    except Exception as exc:  # TF raises DataLossError, NotFoundError, ... for a broken file
        raise UserError("cannot read checkpoint %s: %s" % (init_checkpoint, str(exc).splitlines()[0]))
    if WORD_EMBEDDINGS not in shapes:
        raise UserError("%s holds no %s: not a Google-format BERT checkpoint" % (init_checkpoint, WORD_EMBEDDINGS))
    n_vocab, n_rows = _count_lines(vocab_file), shapes[WORD_EMBEDDINGS][0]
    if n_vocab != config.vocab_size or n_rows != config.vocab_size:
        raise UserError("%s has %d entries but vocab_size is %d in %s and the checkpoint has %d embeddings"
                        % (vocab_file, n_vocab, config.vocab_size, config_file, n_rows))
    return BaseModel(config, vocab_file, init_checkpoint)
