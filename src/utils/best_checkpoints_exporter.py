"""The best-checkpoint exporter, at the path the project has always had it (see
bert_in_a_flask/training/exporter.py): keeps the lowest validation loss, writes a SavedModel."""
from bert_in_a_flask.training.exporter import STATE_FILE, BestCheckpointsExporter  # noqa: F401
