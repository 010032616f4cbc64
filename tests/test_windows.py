"""Long texts as windows (--truncate windows): the cut, the pooling, the flags, and a tiny model
trained on windows whose every path (predictor on TF and ONNX, serve_text, /predict) pools the same."""
import json
import os

import numpy as np
import pytest

from helpers import TRAIN_ARGS, make_rows, run_cli, tiny_vocab, write_csv

from bert_in_a_flask.shared import windows
from bert_in_a_flask.shared.errors import UserError
from bert_in_a_flask.shared.text import TextEncoder, build_tokenizer, window_starts


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(tiny_vocab()) + "\n")
    return build_tokenizer(str(path), True)


# --- fast: the cut and the pooling -----------------------------------------------------------

def test_windows_overlap_by_the_stride_and_stop_at_the_end_or_the_cap(tokenizer):
    encoder = TextEncoder(tokenizer, max_seq_length=6, truncate="windows", window_stride=2, max_windows=10)
    text = "how do i fix my code error when using the"  # ten word pieces
    pieces = encoder.piece_ids(text)
    assert len(pieces) == 10
    got = encoder.encode_windows(text)
    cls_id, sep_id = tokenizer.convert_tokens_to_ids(["[CLS]", "[SEP]"])
    assert [w[1:-1] for w in got] == [pieces[0:4], pieces[2:6], pieces[4:8], pieces[6:10]]
    assert all(w[0] == cls_id and w[-1] == sep_id for w in got)
    capped = TextEncoder(tokenizer, 6, "windows", window_stride=2, max_windows=2).encode_windows(text)
    assert [w[1:-1] for w in capped] == [pieces[0:4], pieces[2:6]]
    assert encoder.encode_windows("") == [[cls_id, sep_id]]
    assert encoder.encode_windows("how do") == [encoder.encode("how do")]
    assert encoder.encode(text) == got[0]  # one sequence of a windowed text: its first window
    head = TextEncoder(tokenizer, 6, "head")
    assert head.encode_windows(text) == [head.encode(text)]
    assert window_starts(5, 4, 2, 8) == [0, 2] and window_starts(4, 4, 2, 8) == [0]


@pytest.mark.parametrize("stride,max_windows,message", [
    (4, 8, "--window-stride must be between 1 and 3"), (0, 8, "--window-stride"), (2, 0, "--max-windows")])
def test_a_stride_of_a_whole_window_or_no_window_is_refused(tokenizer, stride, max_windows, message):
    with pytest.raises(UserError, match=message):
        TextEncoder(tokenizer, 6, "windows", window_stride=stride, max_windows=max_windows)


def test_windows_too_short_to_overlap_name_max_seq_length(tokenizer):
    with pytest.raises(UserError, match=r"^--truncate windows needs --max-seq-length of at least 4 .*, not 3$"):
        TextEncoder(tokenizer, 3, "windows", window_stride=1, max_windows=8)


def test_mean_pooling_is_the_softmax_of_the_mean_logits():
    rng = np.random.RandomState(0)
    logits = rng.randn(5, 3)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    owners = np.array([0, 0, 0, 1, 1])
    pooled = windows.pool(p, owners, 2)
    for text, rows in ((0, [0, 1, 2]), (1, [3, 4])):
        mean = logits[rows].mean(axis=0)
        np.testing.assert_allclose(pooled[text], np.exp(mean) / np.exp(mean).sum(), atol=1e-6)
    top = windows.pool(p, owners, 2, "max")
    np.testing.assert_allclose(top.sum(axis=1), 1.0, atol=1e-6)
    assert top[0].argmax() == np.log(p[:3]).max(axis=0).argmax()
    np.testing.assert_array_equal(windows.pool(p[:2], np.array([0, 1]), 2), p[:2].astype(np.float32))


def test_multi_label_pooling_averages_each_labels_logit_or_takes_its_max():
    p = np.array([[0.9, 0.2], [0.5, 0.4], [0.1, 0.7]])
    owners = np.array([0, 0, 1])
    logit = np.log(p / (1 - p))
    np.testing.assert_allclose(windows.pool(p, owners, 2, "mean", True)[0], 1 / (1 + np.exp(-logit[:2].mean(0))),
                               atol=1e-6)
    np.testing.assert_allclose(windows.pool(p, owners, 2, "max", True), [[0.9, 0.4], [0.1, 0.7]], atol=1e-6)


@pytest.mark.parametrize("flags,message", [
    (["--truncate", "windows", "--max-seq-length", "32", "--window-stride", "30"], "--window-stride must be between"),
    (["--truncate", "windows", "--max-windows", "0"], "--max-windows"),
    (["--window-stride", "16"], "--window-stride applies to --truncate windows"),
    (["--truncate", "head+tail", "--max-windows", "4"], "--max-windows applies to --truncate windows"),
    (["--window-loss", "text"], "--window-loss applies to --truncate windows"),
    (["--truncate", "windows", "--window-loss", "text", "--pad-to-max-seq-length"], "--pad-to-max-seq-length pads"),
])
def test_bad_window_flags_are_one_error_line_and_exit_2(capsys, flags, message):
    from bert_in_a_flask.training.cli import parse_args
    with pytest.raises(SystemExit) as stop:
        parse_args(flags)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_stride_defaults_to_half_a_window():
    from bert_in_a_flask.training.cli import parse_args
    config = parse_args(["--truncate", "windows", "--max-seq-length", "34"])
    assert (config.window_stride, config.max_windows, config.window_pooling) == (16, 8, "mean")
    assert (parse_args([]).window_stride, parse_args([]).max_windows) == (0, 1)


# --- slow: a tiny model trained on windows ---------------------------------------------------

WINDOW_ARGS = ["--truncate", "windows", "--window-stride", "3", "--max-windows", "4"]


@pytest.fixture(scope="module")
def windowed_run(tmp_path_factory, tiny_bert_dir):
    folder = tmp_path_factory.mktemp("windows")
    csv_path = write_csv(folder / "tiny.csv", make_rows(450, seed=1))
    out = folder / "run"
    args = [a for a in TRAIN_ARGS]
    args[args.index("--max-seq-length") + 1] = "8"  # 6 word pieces a window: the texts have up to 12
    result = run_cli("train.py", ["--data-file", csv_path, "--bert-dir", tiny_bert_dir, "--output-dir", str(out),
                                  "--cache-dir", str(folder / "cache")] + args + WINDOW_ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(str(out / "checkpoints" / "best_export.json")) as handle:
        export_dir = json.load(handle)["export_dir"]
    with open(str(out / "report" / "metrics.json")) as handle:
        metrics = json.load(handle)
    return {"export_dir": export_dir, "metrics": metrics, "log": result.stderr}


# Every window of a long text holds one of its label's keywords: a window of filler alone has no answer
# to pool, and a tie between windows would leave the label to rounding.
LONG_TEXTS = ["how do django fix my pandas code error numpy when using pip the list flask", "react npm",
              "why spring does my loop maven not work jvm with the hibernate file gradle"]


@pytest.mark.slow
def test_training_sees_every_window_and_the_export_records_the_windows(windowed_run):
    assert "windows of 364 texts" in windowed_run["log"]
    with open(os.path.join(windowed_run["export_dir"], "assets.extra", "model_config.json")) as handle:
        config = json.load(handle)
    assert (config["truncate"], config["window_stride"], config["max_windows"], config["window_pooling"],
            config["window_loss"]) == ("windows", 3, 4, "mean", "window")
    assert config["calibration"]["method"] == "temperature"
    assert windowed_run["metrics"]["accuracy"] >= 0.8, windowed_run["metrics"]


@pytest.mark.slow
def test_training_on_whole_texts_learns_the_labels(tmp_path, tiny_bert_dir):
    csv_path = write_csv(tmp_path / "tiny.csv", make_rows(450, seed=1))
    args = [a for a in TRAIN_ARGS]
    args[args.index("--max-seq-length") + 1] = "8"
    out = tmp_path / "run"
    result = run_cli("train.py", ["--data-file", csv_path, "--bert-dir", tiny_bert_dir, "--output-dir", str(out),
                                  "--cache-dir", str(tmp_path / "cache"), "--window-loss", "text"]
                     + args + WINDOW_ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    from bert_in_a_flask.tools.long_texts import training_speed

    assert "one record per text" in result.stderr
    assert training_speed(result.stderr)[2] > 1  # the log names the windows: the bench's cost per text
    with open(str(out / "report" / "metrics.json")) as handle:
        metrics = json.load(handle)
    assert metrics["accuracy"] >= 0.8, metrics
    with open(str(out / "checkpoints" / "best_export.json")) as handle:
        export_dir = json.load(handle)["export_dir"]
    with open(os.path.join(export_dir, "assets.extra", "model_config.json")) as handle:
        config = json.load(handle)
    assert (config["truncate"], config["window_stride"], config["max_windows"], config["window_loss"]) == \
        ("windows", 3, 4, "text")


@pytest.mark.slow
def test_every_path_pools_the_windows_alike(windowed_run):
    import tensorflow_text  # noqa: F401
    from bert_in_a_flask.serving.predictor import Predictor
    from bert_in_a_flask.shared.tf_compat import tf

    answers = {}
    for backend in ("tf", "onnx"):
        predictor = Predictor(windowed_run["export_dir"], backend=backend)
        try:
            flat, owners = predictor.window_ids(LONG_TEXTS)
            assert len(flat) > len(LONG_TEXTS)  # long texts have several windows
            answers[backend] = predictor.predict_proba(LONG_TEXTS)
            per_window = predictor.forward_sorted(flat)
            np.testing.assert_allclose(answers[backend], windows.pool(per_window, owners, len(LONG_TEXTS)),
                                       atol=1e-6)
        finally:
            predictor.close()
    np.testing.assert_allclose(answers["onnx"], answers["tf"], atol=1e-4)
    with tf.Graph().as_default() as graph, tf.Session(graph=graph) as session:
        signature = tf.saved_model.loader.load(session, ["serve"], windowed_run["export_dir"]).signature_def[
            "serve_text"]
        got = session.run({name: signature.outputs[name].name for name in ("probabilities", "label")},
                          {signature.inputs["text"].name: LONG_TEXTS})
    np.testing.assert_allclose(got["probabilities"], answers["tf"], atol=1e-5)
    assert [label.decode() for label in got["label"]] == ["python", "javascript", "java"]


@pytest.mark.slow
def test_max_texts_counts_windows(windowed_run, tmp_path):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.app import create_app
    from bert_in_a_flask.serving.predictor import Predictor

    predictor = Predictor(windowed_run["export_dir"])
    try:
        app = create_app(settings.from_env({}, LOG_FILE=str(tmp_path / "calls.log"), MAX_TEXTS=3),
                         predictor=predictor)
        client = app.test_client()
        fits = client.post("/predict", json={"X": ["react npm", "pip flask"]})
        assert fits.status_code == 200 and fits.get_json()["predictions"] == ["javascript", "python"]
        too_many = client.post("/predict", json={"X": LONG_TEXTS[:1]})  # one text, four windows
        assert too_many.status_code == 413 and "windows" in too_many.get_json()["error"]
        routed = client.post("/v1/models/bert:predict", json={"instances": LONG_TEXTS[:1]})
        assert routed.status_code == 413
        metadata = client.get("/metadata").get_json()
        assert (metadata["truncate"], metadata["window_stride"], metadata["max_windows"], metadata["window_loss"]) \
            == ("windows", 3, 4, "window")
    finally:
        predictor.close()


@pytest.mark.slow
def test_make_long_texts_scores_the_same_windows_pooled_the_other_way(windowed_run):
    from bert_in_a_flask.serving.predictor import Predictor
    from bert_in_a_flask.tools.long_texts import accuracy_by_pooling, other_poolings

    rows = make_rows(40, seed=7)
    texts, labels = [text for text, _ in rows], [label for _, label in rows]
    from sklearn.metrics import f1_score
    predictor = Predictor(windowed_run["export_dir"], backend="tf")
    try:
        served = predictor.predict(texts)["predictions"]
        flat, owners = predictor.window_ids(texts)
        max_pooled = windows.pool(predictor.forward_sorted(flat), owners, len(texts), "max").argmax(axis=1)
        scores = accuracy_by_pooling(predictor, texts, labels)
        extra_rows = other_poolings(predictor, texts, labels)
    finally:
        predictor.close()
    assert sorted(scores) == ["max", "mean"]
    # the export's own pooling scores exactly what it serves; max scores the max-pooled labels
    assert scores["mean"][0] == pytest.approx(np.mean([p == t for p, t in zip(served, labels)]))
    assert scores["mean"][1] == pytest.approx(f1_score(labels, served, average="macro"))
    assert scores["max"][0] == pytest.approx(np.mean([predictor.labels[i] == t for i, t in zip(max_pooled, labels)]))
    assert len(extra_rows) == 1 and extra_rows[0].startswith("| windows, max pooling (same model) | ")
    assert "%.2f%%" % (100 * scores["max"][0]) in extra_rows[0]


@pytest.mark.parametrize("pooling", ["mean", "max"])
@pytest.mark.parametrize("multi_label", [False, True])
def test_the_graph_pools_as_the_predictor_does_saturated_windows_included(pooling, multi_label):
    from bert_in_a_flask.shared.tf_compat import tf
    from bert_in_a_flask.training.model import pooled_in_graph

    rng = np.random.RandomState(0)
    logits = np.concatenate([rng.randn(5, 3) * 3, [[25.0, -22.0, 0.0], [18.0, -14.0, 1.0]]]).astype(np.float32)
    if multi_label:
        p = 1 / (1 + np.exp(-logits))
    else:
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
    p = p.astype(np.float32)
    owners = np.array([0, 0, 1, 1, 1, 2, 2])
    with tf.Graph().as_default(), tf.Session() as session:
        got = session.run(pooled_in_graph(tf.constant(p), tf.constant(owners, tf.int32), pooling, multi_label))
    np.testing.assert_allclose(got, windows.pool(p, owners, 3, pooling, multi_label), atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "max"])
@pytest.mark.parametrize("multi_label", [False, True])
def test_training_on_whole_texts_scores_the_answer_serving_pools(pooling, multi_label):
    """--window-loss text: a batch of texts becomes the rows of their real windows, and the logits the
    loss sees are those whose softmax (sigmoid) is the pooled answer the predictor serves."""
    from bert_in_a_flask.shared.tf_compat import tf
    from bert_in_a_flask.training.model import training_rows
    from bert_in_a_flask.training.records import WINDOW_LENGTHS

    ids = np.zeros([3, 3, 4], np.int32)  # texts with 2, 3 and 1 windows, padded to 3 windows of 4 pieces
    lengths = np.array([[4, 2, 0], [4, 4, 3], [1, 0, 0]], np.int32)
    for text, row in enumerate(lengths):
        for window, n in enumerate(row):
            ids[text, window, :n] = 10 * text + window + 1
    logits = (np.random.RandomState(1).randn(6, 4) * 4).astype(np.float32)  # one row per real window
    owners = np.array([0, 0, 1, 1, 1, 2])
    with tf.Graph().as_default(), tf.Session() as session:
        rows, window_pool = training_rows({"input_ids": tf.constant(ids), WINDOW_LENGTHS: tf.constant(lengths)},
                                          pooling, multi_label)
        pooled = window_pool(tf.constant(logits))
        answer = tf.nn.sigmoid(pooled) if multi_label else tf.nn.softmax(pooled, axis=-1)
        got_rows, got_answer = session.run([rows, answer])
    assert got_rows["input_ids"][:, 0].tolist() == [1, 2, 11, 12, 13, 21]
    assert got_rows["input_mask"].sum(axis=1).tolist() == [4, 2, 4, 4, 3, 1]
    per_window = 1 / (1 + np.exp(-logits)) if multi_label else np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(got_answer, windows.pool(per_window, owners, 3, pooling, multi_label), atol=1e-5)


@pytest.mark.parametrize("flags,message", [
    (["--truncations", "tail"], "--truncations: choose from head,head+tail,windows"),
    (["--suffix", "Max Pooling"], "--suffix: lower-case letters"),
])
def test_make_long_texts_refuses_an_unknown_truncation_or_file_suffix(capsys, flags, message):
    from bert_in_a_flask.tools import long_texts
    with pytest.raises(SystemExit) as stop:
        long_texts.main(flags + ["--", "--num-train-epochs", "1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("whole_texts", [False, True])
def test_make_long_texts_counts_windows_and_documents_per_second_either_way(whole_texts):
    from bert_in_a_flask.tools.long_texts import training_speed

    log = ("training 90 steps of 32 examples (20 labels, 9000 windows of 2000 texts%s) into x\n"
           "step 10/90  10.0 examples/s  ETA 00:01:00\nstep 20/90  12.0 examples/s  ETA 00:00:50\n"
           "step 30/90  14.0 examples/s  ETA 00:00:40\n" % (", whole texts a batch" if whole_texts else ""))
    examples, documents, per_document = training_speed(log)
    assert per_document == 4.5
    # a progress line counts what a batch holds: windows, or with --window-loss text whole texts
    assert (examples, documents) == ((54.0, 12.0) if whole_texts else (12.0, 12.0 / 4.5))


def test_make_long_texts_compares_windows_with_what_it_trained():
    from bert_in_a_flask.tools.long_texts import comparisons, truncations
    assert truncations("windows,head") == ["head", "windows"]  # always in the table's order
    both = comparisons({"head+tail": 0.71, "windows": 0.8145}, 0.8495)
    assert both == ["windows - head+tail: +10.45 points (target >= +3); windows - TF-IDF: -3.50 points (target >= 0)"]
    assert comparisons({"windows": 0.86}, 0.8495) == ["windows - TF-IDF: +1.05 points (target >= 0)"]
    assert comparisons({"head": 0.79}, 0.8495) == []


class _TwoWindowAnswers(object):
    """A predictor's window interface with known answers: text 0 ("b") leans to a in three windows
    and is sure of b in one, so mean pooling says a and max pooling b; text 1 ("a") is one window."""
    labels, multi_label = ["a", "b"], False

    class config(object):
        window_pooling = "mean"

    def window_ids(self, texts):
        return [[1]] * 5, np.array([0, 0, 0, 0, 1])

    def forward_sorted(self, flat):
        return np.array([[0.7, 0.3]] * 3 + [[0.2, 0.8], [0.9, 0.1]], np.float32)


def test_make_long_texts_scores_each_pooling_and_adds_the_one_the_export_does_not_use():
    from bert_in_a_flask.tools.long_texts import accuracy_by_pooling, other_poolings
    scores = accuracy_by_pooling(_TwoWindowAnswers(), ["long", "short"], ["b", "a"])
    assert (scores["mean"][0], scores["max"][0]) == (0.5, 1.0)
    assert scores["max"][1] == 1.0 and scores["mean"][1] == pytest.approx(1 / 3.0)  # F1 of a 2/3, of b 0
    assert other_poolings(_TwoWindowAnswers(), ["long", "short"], ["b", "a"]) == [
        "| windows, max pooling (same model) | 100.00% | 1.0000 | | | | |"]


def test_make_long_texts_trains_all_three_into_the_recipes_file_by_default():
    from bert_in_a_flask.tools.long_texts import parse_args
    args = parse_args([])
    assert (list(args.truncations), args.suffix) == (["head", "head+tail", "windows"], "")
    assert parse_args(["--suffix", "seq256"]).suffix == "seq256"


def test_make_long_texts_gives_the_window_flags_to_the_windows_run_only():
    from bert_in_a_flask.tools.long_texts import flags_for
    from bert_in_a_flask.training.cli import parse_args
    flags = ["--max-seq-length", "128", "--max-windows", "4", "--window-loss", "text", "--batch-size", "8"]
    windows = parse_args(flags_for("windows", flags))
    assert (windows.truncate, windows.max_windows, windows.window_loss, windows.batch_size) == ("windows", 4, "text", 8)
    head = parse_args(flags_for("head+tail", flags))  # the trainer refuses window flags elsewhere
    assert (head.truncate, head.max_seq_length, head.batch_size) == ("head+tail", 128, 8)


@pytest.mark.parametrize("tool,flags,message", [
    ("long_texts", ["--truncate", "head"], "--truncate is set by make long_texts: choose the runs with its"),
    ("imbalance", ["--class-weights", "balanced"], "--class-weights is set by make imbalance"),
    ("multilabel", ["--label-separator", ","], "--label-separator is set by make multilabel"),
    ("ood", ["--confidence-keeps", "0.8"], "--confidence-keeps is set by make ood: give its --keep"),
    ("ood", ["--output-dir", "/tmp/elsewhere"], "--output-dir is set by make ood"),
    ("ood", ["--output-dir=models"], "--output-dir is set by make ood"),  # its --overwrite would clear models/
    ("ood", ["--calibrate=none"], "make ood measures the calibrated model's confidence floors"),
    ("long_texts", ["--truncate=head"], "--truncate is set by make long_texts"),
    # the trainer's refusals, found before the first run and not after it: a shortened flag, a bad pair
    ("imbalance", ["--class-w", "balanced"], "trainer flags: unrecognized arguments: --class-w"),
    ("long_texts", ["--window-loss", "text", "--pad-to-max-seq-length"], "trainer flags: --pad-to-max-seq-length"),
    # refused because of a flag the tool adds: the message says the tool added it
    ("ood", ["--label-separator", "|"], "a multi-label model does not have (--label-separator: each label has its "
                                        "own threshold) (make ood adds --confidence-keeps 0.9)"),
    ("multilabel", ["--confidence-keeps", "0.8"], "(make multilabel adds --label-separator"),
    ("multilabel", ["--quantize", "int8"], "trainer flags: --quantize int8 quantizes the ONNX copy, which "
                                           "--skip-onnx turns off (make multilabel adds --skip-onnx)"),
])
def test_a_tool_refuses_a_trainer_flag_it_sets_itself(capsys, tmp_path, tool, flags, message):
    """The tool would override the flag without a word, or lose its run: one error line, nothing written."""
    import importlib
    module = importlib.import_module("bert_in_a_flask.tools." + tool)
    work = tmp_path / "work"
    assert module.main(["--work-dir", str(work), "--"] + flags + ["--", "--num-train-epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not work.exists()


def test_a_variants_trainer_flags_replace_the_makefiles_recipe():
    from bert_in_a_flask.tools.bench_results import split_trainer_flags
    recipe = ["--max-seq-length", "128", "--num-train-epochs", "3"]
    # make long_texts args="--suffix seq256 -- --max-seq-length 256 --skip-onnx" puts args before `-- recipe`
    own, flags = split_trainer_flags(["--suffix", "seq256", "--", "--max-seq-length", "256", "--skip-onnx", "--"]
                                     + recipe)
    assert own == ["--suffix", "seq256"]
    assert flags == ["--max-seq-length", "256", "--num-train-epochs", "3", "--skip-onnx"]
    assert split_trainer_flags(["--seed", "1", "--"] + recipe) == (["--seed", "1"], recipe)
    from bert_in_a_flask.training.cli import parse_args
    assert parse_args(flags).max_seq_length == 256
