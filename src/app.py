"""The Flask service, at the path the project has always had it: `create_app` and gunicorn's
`serve` (bert_in_a_flask/serving/app.py). gunicorn runs "bert_in_a_flask.serving.app:serve()"."""
from bert_in_a_flask.serving.app import create_app, serve  # noqa: F401
