"""The export's raw-text signature `serve_text`: bert's tokenizer inside the graph gives the very word
pieces the Python tokenizer gives, and a process with only TensorFlow + tensorflow-text serves the
export with the labels /predict answers."""
import json
import subprocess
import sys

import pytest

from bert_in_a_flask.shared.tf_compat import tf
from bert_in_a_flask.shared.text import TextEncoder, build_tokenizer
from bert_in_a_flask.tools import download_data, wheels
from bert_in_a_flask.training.records import bert_tokenizer
from bert_in_a_flask.tools.convert_minilm import MODEL_PREFIX
from bert_in_a_flask.training.text_signature import text_features
from helpers import ROOT
from hostile_texts import hostile_texts

pytestmark = pytest.mark.slow  # real vocab and SO titles from the asset wheels; a trained export


@pytest.fixture(scope="module")
def vocabs(tmp_path_factory):
    """MiniLM's uncased vocab, and a cased one: the same plus a capitalized copy of each word piece."""
    folder = tmp_path_factory.mktemp("vocabs")
    uncased = wheels.read_member(wheels.require(wheels.MINILM), MODEL_PREFIX + "vocab.txt").decode("utf-8")
    tokens = uncased.splitlines()
    cased = tokens + [t.capitalize() for t in tokens if t.isalpha() and t.capitalize() != t]
    paths = {"uncased": str(folder / "uncased.txt"), "cased": str(folder / "cased.txt")}
    for name, lines in (("uncased", tokens), ("cased", cased)):
        with open(paths[name], "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
    return paths


@pytest.fixture(scope="module")
def so_test_titles():
    return [text for text, _ in download_data.read_split(wheels.require(wheels.SO_TITLES), "test.tsv")]


def in_graph_ids(texts, vocab_file, do_lower_case, max_seq_length, truncate):
    """Each text's ids from the graph, cut at its mask; and whether the padding is all zeros."""
    with tf.Graph().as_default(), tf.Session() as session:
        feed = tf.placeholder(tf.string, [None])
        features = text_features(feed, vocab_file=vocab_file, do_lower_case=do_lower_case,
                                 max_seq_length=max_seq_length, truncate=truncate)
        session.run(tf.tables_initializer())
        out = session.run(features, {feed: [text.encode("utf-8", "surrogatepass") for text in texts]})
    lengths = out["input_mask"].sum(axis=1)
    assert not out["segment_ids"].any()
    ids = [row[:n].tolist() for row, n in zip(out["input_ids"], lengths)]
    padding_is_zero = all(not row[n:].any() for row, n in zip(out["input_ids"], lengths))
    return ids, padding_is_zero


def differences(texts, vocab_file, do_lower_case, max_seq_length, truncate="head"):
    encoder = TextEncoder(build_tokenizer(vocab_file, do_lower_case), max_seq_length, truncate)
    got, padding_is_zero = in_graph_ids(texts, vocab_file, do_lower_case, max_seq_length, truncate)
    assert padding_is_zero
    return [(text[:60], encoder.encode(text)[:20], ids[:20]) for text, ids in zip(texts, got)
            if ids != encoder.encode(text)]


@pytest.mark.parametrize("vocab,do_lower_case,max_seq_length,truncate", [
    ("uncased", True, 512, "head"), ("uncased", True, 16, "head+tail"), ("cased", False, 512, "head"),
    ("cased", False, 16, "head"), ("uncased", False, 24, "head+tail"), ("cased", True, 512, "head")])
def test_word_pieces_equal_berts_on_so_titles_and_hostile_texts(vocabs, so_test_titles, vocab, do_lower_case,
                                                                max_seq_length, truncate):
    texts = so_test_titles + hostile_texts()
    assert len(texts) > 8000 and max(len(text.encode("utf-8")) for text in texts) >= 100000  # a 100 kB text
    assert differences(texts, vocabs[vocab], do_lower_case, max_seq_length, truncate) == []


@pytest.mark.parametrize("vocab,do_lower_case", [("uncased", True), ("cased", False)])
def test_the_encoders_fast_path_gives_berts_own_ids(vocabs, so_test_titles, vocab, do_lower_case):
    bert = bert_tokenizer(vocabs[vocab], do_lower_case)  # bert's own, with TensorFlow
    encoder = TextEncoder(build_tokenizer(vocabs[vocab], do_lower_case), 100000)
    for text in so_test_titles + hostile_texts():
        assert encoder.piece_ids(text) == bert.convert_tokens_to_ids(bert.tokenize(text)), repr(text[:80])


@pytest.mark.parametrize("vocab,do_lower_case", [("uncased", True), ("cased", False)])
def test_every_character_alone_and_inside_a_word(vocabs, vocab, do_lower_case):
    """Character tables (control, whitespace, punctuation, CJK, case, accents) compared one by one:
    the graph's tokenizer and serving's TensorFlow-free one against bert's own."""
    chars = [chr(code) for code in range(0x30000) if not 0xD800 <= code < 0xE000]
    texts = chars + ["ab%sCd" % char for char in chars]
    assert differences(texts, vocabs[vocab], do_lower_case, 64) == []
    bert = bert_tokenizer(vocabs[vocab], do_lower_case)
    serving = build_tokenizer(vocabs[vocab], do_lower_case)
    assert serving.vocab == bert.vocab
    assert [t for t in texts if serving.convert_tokens_to_ids(serving.tokenize(t))
            != bert.convert_tokens_to_ids(bert.tokenize(t))] == []


FRESH_PROCESS = r"""
import json, sys

class NoProject(object):
    '''Only TensorFlow and tensorflow-text: neither this project nor bert may be imported.'''
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("bert_in_a_flask", "bert"):
            raise ImportError("blocked: " + name)
    find_module = None
sys.meta_path.insert(0, NoProject())

import tensorflow as tf
import tensorflow_text  # noqa: F401  registers the tokenizer's ops
export_dir, texts = sys.argv[1], json.load(sys.stdin)
if tf.__version__.startswith("1."):
    with tf.Session(graph=tf.Graph()) as session:
        meta = tf.saved_model.loader.load(session, ["serve"], export_dir)
        signature = meta.signature_def["serve_text"]
        names = sorted(signature.outputs)
        values = session.run([signature.outputs[n].name for n in names], {signature.inputs["text"].name: texts})
        out = dict(zip(names, values))
        signatures = {key: sorted(meta.signature_def[key].inputs) for key in meta.signature_def}
else:
    loaded = tf.saved_model.load(export_dir)
    out = {k: v.numpy() for k, v in loaded.signatures["serve_text"](text=tf.constant(texts)).items()}
    signatures = {key: sorted(fn.structured_input_signature[1]) for key, fn in loaded.signatures.items()}
print(json.dumps({"label": [l.decode("utf-8") for l in out["label"]], "score": out["score"].tolist(),
                  "accepted": out["accepted"].tolist(),
                  "probabilities": out["probabilities"].tolist(), "signatures": signatures,
                  "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("bert", "bert_in_a_flask"))}))
"""


def test_a_process_with_only_tensorflow_serves_the_text_signature(trained, client):
    texts = ["how do i fix my django error?", "spring maven jvm", "React node NPM!", "", "pourquoi mon café 🐍 plante",
             "webpack " * 400, "gradle\u200b file\x00 error", "中文 numpy pip"]
    result = subprocess.run([sys.executable, "-c", FRESH_PROCESS, trained["export_dir"]], cwd=ROOT,
                            input=json.dumps(texts), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["modules"] == []
    assert served["signatures"] == {"serving_default": ["input_ids", "input_mask", "segment_ids"],
                                    "serve_text": ["text"]}
    answer = client.post("/predict", json={"X": texts}).get_json()
    # serve_text's `accepted` is the export's floor, which /predict applies by default (MIN_CONFIDENCE=export)
    assert [label if ok else None for label, ok in zip(served["label"], served["accepted"])] == answer["predictions"]
    for probabilities, score, label, from_api in zip(served["probabilities"], served["score"], served["label"],
                                                     answer["probabilities"]):
        assert score == max(probabilities)
        assert abs(from_api[label] - score) < 1e-4
