"""Bad input to the trainer: one line naming the problem, exit code 2, no traceback."""
import os
import shutil

import pytest

from helpers import make_rows, run_cli, write_csv

from bert_in_a_flask.training import cli as train


def run_train(capsys, *args):
    code = train.main(list(args))
    return code, capsys.readouterr().err


@pytest.fixture
def out_args(tmp_path):
    return ["--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--skip-report", "--skip-onnx"]


def bad_data_cases(tmp_path):
    rows = make_rows(60, seed=3)
    return {
        "missing file": ([str(tmp_path / "nope.csv")], "data file not found: %s" % (tmp_path / "nope.csv")),
        "missing column": ([write_csv(tmp_path / "cols.csv", rows, header=("title", "tags"))],
                           "has no column 'post'"),
        "one class": ([write_csv(tmp_path / "one.csv", [(t, "java") for t, _ in rows])],
                      "1 distinct label(s)"),
        "tiny class": ([write_csv(tmp_path / "small.csv", rows + [("a lonely text", "rust")])],
                       "class 'rust' has 1 row(s)"),
        "too few rows to stratify": ([write_csv(tmp_path / "nine.csv", make_rows(9, seed=3))],
                                     "9 rows of 3 classes split 8 / 1 for the test split, and each part needs a "
                                     "row per class"),
        # the test split takes 3 of 21 rows; the validation split would take 2 of the 18 left
        "too few rows for validation": ([write_csv(tmp_path / "21.csv", make_rows(21, seed=3))],
                                        "18 rows of 3 classes split 16 / 2 for the validation split"),
        "too few multi-label rows": ([write_csv(tmp_path / "two.csv", [("a b", "java|python"), ("c", "go")]),
                                      "--label-separator", "|"], "2 row(s) are too few to split off"),
    }


@pytest.mark.parametrize("case", ["missing file", "missing column", "one class", "tiny class",
                                  "too few rows to stratify", "too few rows for validation",
                                  "too few multi-label rows"])
def test_bad_data_gives_one_line_and_exit_2(case, tmp_path, capsys, tiny_bert_dir, out_args):
    data_args, message = bad_data_cases(tmp_path)[case]
    code, err = run_train(capsys, "--data-file", *data_args, "--bert-dir", tiny_bert_dir,
                          "--max-seq-length", "32", *out_args)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, err[-2000:]


@pytest.mark.parametrize("empty", ["--val-file", "--test-file"])
def test_an_empty_split_file_is_refused_before_overwrite_deletes(empty, tmp_path, capsys, tiny_bert_dir, out_args):
    rows = make_rows(60, seed=3)
    files = {"--val-file": write_csv(tmp_path / "val.csv", rows[:9]),
             "--test-file": write_csv(tmp_path / "test.csv", rows[:9])}
    files[empty] = write_csv(tmp_path / "header_only.csv", [])
    precious = tmp_path / "out" / "checkpoints" / "precious"
    precious.parent.mkdir(parents=True)
    precious.write_text("keep me")
    code, err = run_train(capsys, "--data-file", write_csv(tmp_path / "train.csv", rows), "--bert-dir", tiny_bert_dir,
                          "--max-seq-length", "32", "--overwrite", *[a for pair in files.items() for a in pair],
                          *out_args)
    assert code == 2 and err.strip().splitlines()[-1] == "error: %s %s has no rows (after dropping empty ones)" % (
        empty, tmp_path / "header_only.csv")
    assert precious.read_text() == "keep me"


def test_max_seq_length_above_the_checkpoint_is_refused(tmp_path, capsys, tiny_bert_dir, tiny_csv, out_args):
    code, err = run_train(capsys, "--data-file", tiny_csv, "--bert-dir", tiny_bert_dir,
                          "--max-seq-length", "128", *out_args)
    assert code == 2
    assert "--max-seq-length 128 is above max_position_embeddings 64" in err.strip().splitlines()[-1]


def test_case_mismatch_between_vocab_and_flag_is_refused(tmp_path, capsys, tiny_bert_dir, tiny_csv, out_args):
    code, err = run_train(capsys, "--data-file", tiny_csv, "--bert-dir", tiny_bert_dir,
                          "--max-seq-length", "32", "--do-lower-case", "false", *out_args)
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert "vocab.txt is lower-cased but --do-lower-case=false" in last


def test_cased_vocab_with_lower_casing_is_refused(tmp_path, capsys, tiny_bert_dir, tiny_csv, out_args):
    cased = str(tmp_path / "cased_bert")
    shutil.copytree(tiny_bert_dir, cased)
    with open(os.path.join(cased, "vocab.txt")) as handle:
        words = handle.read().split("\n")
    words[10] = words[10].capitalize()
    with open(os.path.join(cased, "vocab.txt"), "w") as handle:
        handle.write("\n".join(words))
    code, err = run_train(capsys, "--data-file", tiny_csv, "--bert-dir", cased, "--max-seq-length", "32",
                          "--do-lower-case", "true", *out_args)
    assert code == 2 and "is cased but --do-lower-case=true" in err


def test_missing_base_model_names_the_file(tmp_path, capsys, tiny_csv, out_args):
    code, err = run_train(capsys, "--data-file", tiny_csv, "--bert-dir", str(tmp_path / "none"), *out_args)
    assert code == 2
    assert "base model file not found: %s" % os.path.join(str(tmp_path / "none"), "bert_config.json") in err


@pytest.mark.slow  # a real process
def test_cli_error_is_one_line_without_traceback(tmp_path, tiny_bert_dir):
    """Through a real process: what a user sees on the terminal."""
    result = run_cli("train.py", ["--data-file", str(tmp_path / "missing.csv"), "--bert-dir", tiny_bert_dir,
                                  "--max-seq-length", "32", "--output-dir", str(tmp_path / "out")])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: data file not found: %s" % (tmp_path / "missing.csv")


def test_empty_texts_and_missing_labels_are_dropped_and_counted(tmp_path, caplog):
    from bert_in_a_flask.training import data
    rows = make_rows(30, seed=5) + [("", "java"), ("   ", "python"), ("text without label", "")]
    path = write_csv(tmp_path / "gaps.csv", rows)
    frame = data.read_table(path, "post", "tags")
    assert len(frame) == 30
    assert "dropped 2 rows with empty text and 1 with a missing label" in caplog.text


def test_tsv_and_custom_columns(tmp_path):
    from bert_in_a_flask.training import data
    path = write_csv(tmp_path / "d.tsv", make_rows(100, seed=2), header=("title", "tag"), sep="\t")
    splits = data.load_splits(path, text_column="title", label_column="tag")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (81, 9, 10)
    assert splits.labels == ["java", "javascript", "python"]
    # stratified: every class in every split
    for part in splits:
        if hasattr(part, "columns"):
            assert set(part["label"]) == set(splits.labels)


def test_a_weights_file_naming_unknown_labels_stops_before_anything_is_written(tmp_path, capsys, tiny_bert_dir,
                                                                              tiny_csv, out_args):
    weights = tmp_path / "weights.json"
    weights.write_text('{"java": 2, "cobol": 3}')
    code, err = run_train(capsys, "--data-file", tiny_csv, "--bert-dir", tiny_bert_dir, "--max-seq-length", "32",
                          "--class-weights", str(weights), *out_args)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: --class-weights: %s names labels the training data "
                                                   "does not have: 'cobol'" % weights)
    assert not os.path.exists(str(tmp_path / "out"))
