"""bert-in-a-flask: fine-tune Google BERT checkpoints for text classification (tf.estimator) and
serve the export from a Flask microservice.

    shared/    runs everywhere: TF 1.15/2.15 compatibility, the user-error type, text encoding,
               the export contract (the one thing training and serving agree on)
    training/  the trainer: data, records, model_fn, optimizer, estimator, exporter, report
    serving/   the service: Predictor, micro-batcher, Flask app, settings, metrics, OpenAPI
    tools/     bench, load test, MiniLM converter, data download, wheel fetch, start_api
"""
