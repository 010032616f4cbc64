"""Bucketing, dynamic padding and micro-batching change no answer."""
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from helpers import make_rows

TEXTS = [text for text, _ in make_rows(60, seed=11)] + ["react " * 200, "", "spring"]


@pytest.mark.slow  # the session's trained export
def test_order_and_batch_size_change_no_probability(predictor):
    reference = np.stack([predictor.predict_proba([t])[0] for t in TEXTS])  # one text per pass
    shuffled = list(range(len(TEXTS)))
    random.Random(0).shuffle(shuffled)
    together = predictor.predict_proba([TEXTS[i] for i in shuffled])
    np.testing.assert_allclose(together, reference[shuffled], atol=1e-5)


@pytest.mark.slow  # the session's trained export
def test_padding_to_max_length_changes_no_probability(predictor):
    """The original padded every text to max_seq_length; we pad each batch to its longest."""
    ids = predictor.preprocess(TEXTS)
    padded = np.concatenate([predictor.forward_batch(ids[i:i + 8], width=predictor.encoder.max_seq_length)
                             for i in range(0, len(ids), 8)])
    np.testing.assert_allclose(predictor.forward_sorted(ids), padded, atol=1e-5)


@pytest.mark.slow  # the session's trained export
def test_micro_batching_changes_no_answer_under_concurrency(trained):
    from bert_in_a_flask.serving.predictor import Predictor, QueuePolicy
    plain = Predictor(trained["export_dir"], max_batch_size=8)
    batched = Predictor(trained["export_dir"], max_batch_size=8, queue=QueuePolicy(wait_ms=5))
    expected = [plain.predict_proba([t])[0] for t in TEXTS]
    with ThreadPoolExecutor(max_workers=16) as pool:
        got = list(pool.map(lambda t: batched.predict_proba([t])[0], TEXTS))
    np.testing.assert_allclose(np.stack(got), np.stack(expected), atol=1e-5)
    # a multi-text request keeps its own order inside a shared pass
    with ThreadPoolExecutor(max_workers=4) as pool:
        chunks = [TEXTS[i:i + 7] for i in range(0, len(TEXTS), 7)]
        results = list(pool.map(batched.predict_proba, chunks))
    np.testing.assert_allclose(np.concatenate(results), np.stack(expected), atol=1e-5)


def read_batches(input_fn, n_batches=None):
    """The first `n_batches` batches (None: all of a finite input)."""
    from bert_in_a_flask.shared.tf_compat import tf
    batches = []
    with tf.Graph().as_default():
        features, labels = tf.data.make_one_shot_iterator(input_fn()).get_next()
        with tf.Session() as session:
            while n_batches is None or len(batches) < n_batches:
                try:
                    batches.append(session.run((features, labels)))
                except tf.errors.OutOfRangeError:
                    break
    return batches


def write_records(tmp_path, n=200):
    import pandas as pd
    from bert_in_a_flask.shared.text import TextEncoder, build_tokenizer
    from bert_in_a_flask.training.records import write_records as write
    from helpers import tiny_vocab
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(tiny_vocab()) + "\n")
    frame = pd.DataFrame(make_rows(n, seed=4), columns=["text", "label"])
    encoder = TextEncoder(build_tokenizer(str(vocab), True), 32)
    path = str(tmp_path / "train.tfrecord")
    lengths = write(frame, ["java", "javascript", "python"], encoder, path)
    return path, lengths


def test_bucketed_batches_are_padded_only_to_their_longest(tmp_path):
    from bert_in_a_flask.training.records import input_fn_builder
    path, lengths = write_records(tmp_path)
    real_positions = padded_positions = 0
    for batch, _ in read_batches(input_fn_builder(path, batch_size=16, is_training=True, max_seq_length=32,
                                                  length_bucketing=True, seed=1), 20):
        real = batch["input_mask"].sum(axis=1)
        assert batch["input_ids"].shape[1] == real.max()  # no column of pure padding
        assert real.max() <= 1.1 * real.min() + 1  # one bucket: lengths within ~10 % of each other
        real_positions, padded_positions = real_positions + real.sum(), padded_positions + real.size
    assert real_positions / padded_positions >= 0.9
    assert len(set(lengths)) > 1  # the texts do differ in length
    for batch, _ in read_batches(input_fn_builder(path, batch_size=16, is_training=True, max_seq_length=32,
                                                  pad_to_max=True, seed=1), 3):
        assert batch["input_ids"].shape[1] == 32  # the original's way, kept for the benchmark


def test_eval_input_sees_every_example_once(tmp_path):
    from bert_in_a_flask.training.records import input_fn_builder
    path, lengths = write_records(tmp_path, n=96)
    batches = read_batches(input_fn_builder(path, batch_size=8, is_training=False, max_seq_length=32))
    seen = sorted(int(m.sum()) for batch, _ in batches for m in batch["input_mask"])
    assert seen == sorted(lengths)
    for batch, _ in batches:  # bucketed as in training: little padding
        real = batch["input_mask"].sum(axis=1)
        assert batch["input_ids"].shape[1] == real.max() <= 1.1 * real.min() + 1


def brute_force_cost(lengths, max_batch_size, overhead):
    """The cheapest split of sorted `lengths` into consecutive batches, by trying every split."""
    import itertools
    n, best = len(lengths), None
    for k in range(n):
        for inner in itertools.combinations(range(1, n), k):
            cuts = [0] + list(inner) + [n]
            if all(b - a <= max_batch_size for a, b in zip(cuts, cuts[1:])):
                cost = sum((b - a) * lengths[b - 1] + overhead for a, b in zip(cuts, cuts[1:]))
                best = cost if best is None else min(best, cost)
    return best


def test_planned_batches_are_the_cheapest_split():
    from bert_in_a_flask.serving.predictor import plan_batches
    rng = random.Random(3)
    for _ in range(40):
        lengths = sorted(rng.randint(3, 60) for _ in range(rng.randint(1, 9)))
        size, overhead = rng.randint(1, 5), rng.choice([0, 8, 32])
        cuts = plan_batches(lengths, size, overhead)
        assert cuts[0] == 0 and cuts[-1] == len(lengths) and all(0 < b - a <= size for a, b in zip(cuts, cuts[1:]))
        cost = sum((b - a) * lengths[b - 1] + overhead for a, b in zip(cuts, cuts[1:]))
        assert cost == brute_force_cost(lengths, size, overhead), (lengths, size, overhead, cuts)


def test_one_long_text_is_not_padded_into_the_short_ones():
    """31 short titles and one 120-piece text: fixed runs of 32 would pad all 32 to 120."""
    from bert_in_a_flask.serving.predictor import plan_batches
    assert plan_batches([10] * 31 + [120], 32) == [0, 31, 32]
    assert plan_batches([12] * 64, 32) == [0, 32, 64]  # equal lengths: full batches
    assert plan_batches([], 32) == [0]
