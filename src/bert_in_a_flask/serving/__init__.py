"""The service: Predictor (preprocess, forward, postprocess), micro-batcher, Flask app, settings.

Imports nothing from training: the export directory is all it reads.
"""
