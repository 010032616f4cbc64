"""Unit tests (the fast tier): truncation, settings, metrics, data splits, the export contract and
the API's routes on a fake predictor. No training, no server, no TensorFlow model."""
import json
import os
import subprocess
import sys

import pytest

from bert_in_a_flask.shared.errors import UserError
from bert_in_a_flask.shared.export_contract import (FORMAT_VERSION, SINGLE_LABEL_FORMAT_VERSION, ExportConfig,
                                                    read_assets)
from helpers import ROOT, FakePredictor, make_rows, tiny_vocab, write_csv


@pytest.fixture
def encoder_for(tmp_path):
    from bert_in_a_flask.shared.text import TextEncoder, build_tokenizer
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(tiny_vocab()) + "\n")

    def build(max_seq_length, truncate="head"):
        return TextEncoder(build_tokenizer(str(vocab), True), max_seq_length, truncate)
    return build


# --- text encoding -------------------------------------------------------------------------

def test_head_truncation_keeps_the_start(encoder_for):
    encoder = encoder_for(6)
    tokens = ["t%d" % i for i in range(10)]
    assert encoder.truncated(tokens) == tokens[:4]  # 6 minus [CLS] and [SEP]
    ids = encoder.encode("how do i fix my code error when using the")
    assert len(ids) == 6 and ids[0] == 2 and ids[-1] == 3  # [CLS] ... [SEP] in the tiny vocab


def test_head_tail_truncation_keeps_both_ends(encoder_for):
    encoder = encoder_for(130, "head+tail")
    tokens = ["t%d" % i for i in range(300)]
    kept = encoder.truncated(tokens)
    assert len(kept) == 128
    assert kept[:32] == tokens[:32] and kept[32:] == tokens[-96:]  # 128 x 128/510 = 32 from the head
    assert encoder.truncated(tokens[:100]) == tokens[:100]  # short texts are untouched


def test_encoder_refuses_a_bad_truncation_or_length(encoder_for):
    with pytest.raises(UserError, match="--truncate must be one of"):
        encoder_for(32, "middle")
    with pytest.raises(UserError, match="at least 3"):
        encoder_for(2)


# --- serving settings ----------------------------------------------------------------------

@pytest.mark.parametrize("do_lower_case", [True, False])
def test_encoder_gives_berts_ids_on_ascii_and_hostile_texts(tmp_path, do_lower_case):
    """The encoder's fast path (ASCII regexes, remembered words) against bert's FullTokenizer itself."""
    import random
    from bert_in_a_flask.shared.text import TextEncoder, build_tokenizer
    from hostile_texts import hostile_texts
    pieces = [chr(c) for c in range(33, 127)] + ["##" + chr(c) for c in range(33, 127)]
    words = ["java", "Java", "script", "##script", "##s", "null", "point", "##er", "exception", "how", "do", "I"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + pieces + words) + "\n")
    from bert_in_a_flask.training.records import bert_tokenizer
    bert = bert_tokenizer(str(vocab), do_lower_case)  # bert's own, with TensorFlow
    encoder = TextEncoder(build_tokenizer(str(vocab), do_lower_case), 4096)
    rng = random.Random(3)
    ascii_texts = ["".join(rng.choice(words + [chr(rng.randint(0, 127)) for _ in range(3)] + [" "])
                           for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    for text in ascii_texts + hostile_texts(300):
        expected = bert.convert_tokens_to_ids(bert.tokenize(text))[:4094]
        assert encoder.encode(text) == [2] + expected + [3], repr(text[:80])


def test_settings_come_from_defaults_then_environment_then_overrides():
    from bert_in_a_flask.serving import settings
    plain = settings.from_env({})
    assert plain == settings.DEFAULTS
    env = settings.from_env({"MAX_BATCH_SIZE": "16", "MICRO_BATCHING": "off", "LOG_FILE": "x.log",
                             "MAX_TEXTS": ""}, MAX_TEXTS=7)
    assert env["MAX_BATCH_SIZE"] == 16 and env["MICRO_BATCHING"] is False and env["LOG_FILE"] == "x.log"
    assert env["MAX_TEXTS"] == 7
    with pytest.raises(UserError, match="INTRA_OP_THREADS must be an integer >= 0, not '-1'"):
        settings.from_env({"INTRA_OP_THREADS": "-1"})
    with pytest.raises(UserError, match="MAX_TEXTS must be a positive integer, not 'many'"):
        settings.from_env({"MAX_TEXTS": "many"})


# --- metrics -------------------------------------------------------------------------------

def scraped(text):
    """{(name, labels as a sorted tuple): value} of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_render_prometheus_text():
    from bert_in_a_flask.serving.metrics import Metrics
    metrics = Metrics()
    metrics.observe_request("/predict", 200, 0.02)
    metrics.observe_request("/predict", 200, 3.0)
    metrics.observe_request("other", 404, 0.001)
    metrics.observe_batch(5)
    metrics.admitted(7)
    metrics.admitted(-3)
    metrics.shed("queue_full")
    values = scraped(metrics.render().decode())
    assert values[("api_requests_total", (("endpoint", "/predict"), ("status", "200")))] == 2
    assert values[("api_requests_total", (("endpoint", "other"), ("status", "404")))] == 1
    assert values[("api_request_latency_seconds_bucket", (("endpoint", "/predict"), ("le", "0.025")))] == 1
    assert values[("api_request_latency_seconds_bucket", (("endpoint", "/predict"), ("le", "+Inf")))] == 2
    assert values[("api_request_latency_seconds_sum", (("endpoint", "/predict"),))] == pytest.approx(3.02)
    assert values[("api_texts_predicted_total", ())] == 5
    assert values[("api_request_texts_bucket", (("le", "4.0"),))] == 0
    assert values[("api_pending_texts", ())] == 4
    assert values[("api_shed_requests_total", (("reason", "queue_full"),))] == 1


# --- data splits ---------------------------------------------------------------------------

def test_split_errors_name_the_file_and_the_problem(tmp_path):
    from bert_in_a_flask.training import data
    rows = make_rows(30, seed=7)
    one_class = write_csv(tmp_path / "one.csv", [(t, "java") for t, _ in rows])
    with pytest.raises(UserError, match="one.csv has 1 distinct label"):
        data.load_splits(one_class)
    tiny = write_csv(tmp_path / "tiny.csv", rows + [("lonely", "rust")])
    with pytest.raises(UserError, match="tiny.csv: class 'rust' has 1 row"):
        data.load_splits(tiny)
    train = write_csv(tmp_path / "train.csv", rows)
    unseen = write_csv(tmp_path / "val.csv", [("a go question", "go")] + rows[:3])
    with pytest.raises(UserError, match="validation split has labels never seen in training: go"):
        data.load_splits(train, val_file=unseen, test_file=train)


# --- the export contract -------------------------------------------------------------------

def write_export(folder, config, labels=("java", "python")):
    extra = os.path.join(folder, "assets.extra")
    os.makedirs(extra)
    open(os.path.join(folder, "saved_model.pb"), "w").close()
    with open(os.path.join(extra, "labels.json"), "w") as handle:
        json.dump(list(labels), handle)
    with open(os.path.join(extra, "vocab.txt"), "w") as handle:
        handle.write("\n".join(tiny_vocab()) + "\n")
    with open(os.path.join(extra, "model_config.json"), "w") as handle:
        json.dump(config, handle)
    return folder


def test_export_config_round_trip(tmp_path):
    config = ExportConfig(max_seq_length=64, do_lower_case=True, truncate="head+tail", pooling="mean",
                          base_model="all-MiniLM-L6-v2", num_labels=2, val_metrics={"eval_loss": 0.3})
    path = str(tmp_path / "model_config.json")
    config.write(path)
    assert ExportConfig.read(path) == config
    # single-label exports keep the version older readers know; multi-label ones need the newest
    assert json.load(open(path))["format_version"] == SINGLE_LABEL_FORMAT_VERSION


def test_an_export_written_before_format_version_still_loads(tmp_path):
    """model_config.json as the first trainer wrote it: no format_version, no truncate/pooling."""
    old = {"max_seq_length": 32, "do_lower_case": True, "base_model": "pretrained", "bert_config": {},
           "created": "2026-11-20T10:00:00Z", "val_metrics": {"eval_loss": 0.1}, "global_step": 182,
           "data_file": "d.csv", "data_sha256": "ab", "num_labels": 2, "tf_version": "1.15.5"}
    labels, _, config = read_assets(write_export(str(tmp_path / "1700000000"), old))
    assert labels == ["java", "python"]
    assert (config.format_version, config.truncate, config.pooling) == (0, "head", "cls")
    assert config.max_seq_length == 32 and config.global_step == 182


@pytest.mark.parametrize("field,value,message", [
    ("max_seq_length", "64", "field 'max_seq_length' must be an integer >= 3, not '64'"),
    ("do_lower_case", "yes", "field 'do_lower_case' must be true or false"),
    ("truncate", "tail", "field 'truncate' must be one of head, head+tail"),
    ("format_version", FORMAT_VERSION + 1, "field 'format_version' must be an integer <= %d" % FORMAT_VERSION),
    ("val_metrics", [], "field 'val_metrics' must be a JSON object"),
    # a multi-label export: its separator, its version (older readers must refuse it), a threshold per label
    ("multi_label", "yes", "field 'multi_label' must be true or false"),
    ("label_separator", "", "field 'label_separator' must be the separator"),
    ("format_version", SINGLE_LABEL_FORMAT_VERSION, "field 'format_version' must be %d for a multi_label export"
     % FORMAT_VERSION),
    ("calibration", {"method": "thresholds", "thresholds": [0.5]}, "thresholds are a list of one per label"),
    ("window_loss", "document", "field 'window_loss' must be one of window, text"),
])
def test_a_bad_export_config_names_the_file_and_the_field(tmp_path, field, value, message):
    config = dict(max_seq_length=32, do_lower_case=True, format_version=FORMAT_VERSION)
    if field in ("label_separator", "calibration") or (field == "format_version" and value < FORMAT_VERSION):
        config.update(multi_label=True, label_separator="|", num_labels=3)
    if field.startswith("window"):
        config.update(truncate="windows", window_stride=8)
    config[field] = value
    folder = write_export(str(tmp_path / "1700000000"), config)
    with pytest.raises(UserError) as error:
        read_assets(folder)
    path = os.path.join(folder, "assets.extra", "model_config.json")
    assert str(error.value).startswith(path + ": field %r" % field) and message in str(error.value)


def test_an_export_config_without_a_required_field_is_named(tmp_path):
    folder = write_export(str(tmp_path / "1700000000"), {"do_lower_case": True})
    with pytest.raises(UserError, match="model_config.json has no field 'max_seq_length'"):
        read_assets(folder)


# --- the API's routes, on a fake predictor -------------------------------------------------

@pytest.fixture
def fake_client(tmp_path):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.app import create_app
    return create_app(settings.from_env({}, LOG_FILE=str(tmp_path / "calls.log"), MAX_TEXTS=3),
                      predictor=FakePredictor()).test_client()


def test_routes_answer_on_a_fake_predictor(fake_client):
    answer = fake_client.post("/predict", json={"X": ["spring jvm", "django"]}).get_json()
    assert answer["predictions"] == ["java", "python"] and answer["model"] == "fake/1700000000"
    assert answer["prediction_probs"] == [0.9, 0.8]
    assert fake_client.get("/ready").get_json() == {"ready": True, "model": "fake/1700000000"}
    meta = fake_client.get("/metadata").get_json()
    assert meta["labels"] == ["java", "python"] and meta["base_model"] == "fake" and meta["max_seq_length"] == 16
    assert meta["created"] == "2026-11-25T00:00:00Z" and meta["format_version"] == SINGLE_LABEL_FORMAT_VERSION
    assert fake_client.post("/predict", json={"X": ["a"] * 4}).status_code == 413
    assert fake_client.post("/predict", json={"X": [1]}).get_json()["error"] == '"X"[0] must be a string, not int'
    assert 'endpoint="/predict",status="200"' in fake_client.get("/metrics").get_data(as_text=True)
    assert "/predict" in fake_client.get("/openapi.json").get_json()["paths"]


# --- serving never imports training --------------------------------------------------------

SERVING_ONLY = r"""
import importlib.abc, json, sys
BLOCKED = ("bert_in_a_flask.training", "bert_in_a_flask.tools", "bert.modeling", "bert.optimization",
           "bert.run_classifier", "pandas", "sklearn")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(BLOCKED):
            raise ImportError("serving imported %s" % name)

sys.meta_path.insert(0, Block())
from bert_in_a_flask.serving import settings
from bert_in_a_flask.serving.app import create_app
from bert_in_a_flask.serving.predictor import Predictor
app = create_app(settings.from_env({}), predictor=Predictor(sys.argv[1]))
print(json.dumps(app.test_client().post("/predict", json={"X": ["spring maven jvm"]}).get_json()))
"""


@pytest.mark.slow
def test_serving_runs_with_the_training_code_unimportable(trained):
    result = subprocess.run([sys.executable, "-c", SERVING_ONLY, trained["export_dir"]], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["predictions"] == ["java"]


def test_no_module_or_test_edits_the_import_path():
    """Nothing under src or tests edits the import path: it comes from the installation (pyproject.toml)."""
    needle = "sys." + "path"  # spelled apart so that this file passes its own check
    for top in ("src", "tests"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if name.endswith(".py"):
                    with open(os.path.join(folder, name), encoding="utf-8") as handle:
                        assert needle not in handle.read(), name


def test_progress_rate_leaves_out_the_step_that_saved_and_evaluated(caplog):
    """The estimator's checkpoint hook saves, evaluates and exports inside a training step's
    after_run; the examples/s line must not count that time as training."""
    import collections
    import logging
    import re
    import time
    from bert_in_a_flask.shared.tf_compat import tf
    from bert_in_a_flask.training.estimator import ProgressHook
    hook = ProgressHook(batch_size=1, total_steps=100, every_n=10, checkpoint_every=5)
    with tf.Graph().as_default():
        tf.train.get_or_create_global_step()
        hook.begin()
    results = collections.namedtuple("RunValues", "results")
    with caplog.at_level(logging.INFO, logger="bert_in_a_flask.training.estimator"):
        for step in range(12):
            hook.before_run(None)
            time.sleep(0.5 if (step + 1) % 5 == 0 else 0.01)  # steps 5 and 10 end on a checkpoint
            hook.after_run(None, results(step))
    lines = [r.getMessage() for r in caplog.records if "examples/s" in r.getMessage()]
    assert lines and lines[0].startswith("step 12/100")  # ten counted steps: 1-4, 6-9, 11, 12
    assert float(re.search(r"([\d.]+) examples/s", lines[0]).group(1)) > 40  # ~100 unless the saves count
