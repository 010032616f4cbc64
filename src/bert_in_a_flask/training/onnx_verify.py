"""The check an ONNX file passes before it is kept: the same inputs through the SavedModel and the file,
on the same batching, padding and order (the Predictor's), and how far their probabilities differ."""
import random

import numpy as np

MAX_ABS_DIFF = 1e-4   # the most a probability may differ between the SavedModel and the ONNX file
MIN_TEXTS = 500       # inputs the verification runs through both


def verification_inputs(predictor, texts, seed):
    """Word-piece id lists: the texts encoded as served, topped up with random sequences to MIN_TEXTS;
    and a few words saying what they are."""
    id_lists = predictor.preprocess(list(texts))
    missing = MIN_TEXTS - len(id_lists)
    if missing > 0:
        rng = random.Random(seed)
        vocab_size = len(predictor.encoder.tokenizer.vocab)
        cls_id, sep_id = predictor.encoder.tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])
        for _ in range(missing):
            length = rng.randint(1, predictor.encoder.max_seq_length - 2)
            id_lists.append([cls_id] + [rng.randrange(5, vocab_size) for _ in range(length)] + [sep_id])
    described = "%d texts" % len(texts) if texts else "no texts"
    return id_lists, described + (" + %d random word-piece sequences" % missing if missing > 0 else "")


def agreement(expected, got):
    """The record's agreement fields for the SavedModel's probabilities `expected` and the file's `got`."""
    max_abs_diff = float(np.abs(got - expected).max())
    return {"n_texts": len(expected), "max_abs_diff": max_abs_diff,
            "label_agreement": float((got.argmax(axis=1) == expected.argmax(axis=1)).mean()),
            "verified": max_abs_diff <= MAX_ABS_DIFF}
