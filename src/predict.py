"""Classify a CSV/TSV of texts with an exported model (bert_in_a_flask/serving/predict_cli.py).
Run it with the project's venv: `.venv-python3.7/bin/python src/predict.py --help`."""
import sys

try:
    from bert_in_a_flask.serving.predict_cli import main
except ModuleNotFoundError as exc:  # a Python without the project installed (make venv installs it)
    sys.stderr.write("error: %s: `%s` lacks the project; run it as `.venv-python3.7/bin/python %s` "
                     "(`make venv` builds the venv)\n" % (exc, sys.executable, sys.argv[0]))
    sys.exit(2)

if __name__ == "__main__":
    sys.exit(main())
