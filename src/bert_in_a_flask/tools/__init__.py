"""Developer tools: benchmark, load test, MiniLM converter, data download, wheel fetch, start_api."""
import os

# The repository these tools work in (they start its CLIs and read gunicorn.conf.py); the project
# is installed editable, so this is the checkout.
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
APP_ENTRY_POINT = "bert_in_a_flask.serving.app:serve()"
