"""Fine-tune a Google-format BERT checkpoint for text classification: the trainer's command line
(bert_in_a_flask/training/cli.py). Run it with the project's venv: `make train args=...` or
`.venv-python3.7/bin/python src/train.py --help`."""
import sys

try:
    from bert_in_a_flask.training.cli import main
except ModuleNotFoundError as exc:  # a Python without the project installed (make venv installs it)
    sys.stderr.write("error: %s: `%s` lacks the project; run it through make (`make help`) or as "
                     "`.venv-python3.7/bin/python %s` (`make venv` builds the venv)\n"
                     % (exc, sys.executable, sys.argv[0]))
    sys.exit(2)

if __name__ == "__main__":
    sys.exit(main())
