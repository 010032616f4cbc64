"""This machine's ceilings: what a model's matrix multiplies allow at the GEMM speed timed beside it
(the training and serving rows of `make bench` report each rate as a share of one)."""
import csv
import json
import os

import numpy as np

from ..serving.predictor import Predictor
from ..shared.text import TextEncoder, build_tokenizer, vocab_is_cased


def flops_per_word_piece(bert_config):
    """Forward FLOPs per word piece of the encoder's matrix multiplies (attention over short titles
    is a few percent more and left out): 2 x (4 H^2 + 2 H I) per layer."""
    h, i, layers = bert_config["hidden_size"], bert_config["intermediate_size"], bert_config["num_hidden_layers"]
    return 2.0 * layers * (4 * h * h + 2 * h * i)


def train_ceiling_examples_per_s(bert_dir, data_dir, gflops):
    """Training examples/s at this machine's GEMM speed: forward + backward is 3x the forward's
    FLOPs, over the training titles' mean word pieces (no padding at all)."""
    with open(os.path.join(bert_dir, "bert_config.json")) as handle:
        config = json.load(handle)
    with open(os.path.join(data_dir, "train.csv"), newline="") as handle:
        texts = [row["post"] for row in csv.DictReader(handle)][:2000]
    vocab = os.path.join(bert_dir, "vocab.txt")
    encoder = TextEncoder(build_tokenizer(vocab, not vocab_is_cased(vocab)), 128, "head")
    pieces = float(np.mean([len(encoder.encode(text)) for text in texts]))
    return gflops * 1e9 / (3 * flops_per_word_piece(config) * pieces)


def ceiling_titles_per_gflops(export_dir, titles):
    """Titles/s per GEMM GFLOP/s: 1e9 over the model's FLOPs per word piece x the titles' mean pieces."""
    predictor = Predictor(export_dir, backend="tf")
    pieces = float(np.mean([len(ids) for ids in predictor.preprocess(titles)]))
    flops = flops_per_word_piece(predictor.config.bert_config)
    predictor.close()
    return 1e9 / (flops * pieces)
