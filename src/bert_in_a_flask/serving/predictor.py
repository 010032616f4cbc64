"""The one inference path (app, batch CLI, report, tests): preprocess -> forward -> postprocess.

Loads an export once; `Session.run` is thread-safe, so one Predictor serves all threads.
Texts are sorted by length and cut into batches of at most `max_batch_size`, each padded
to its longest member, then put back in the caller's order.
"""
import logging
import os

import numpy as np

from ..shared.errors import UserError
from ..shared.export_contract import SIGNATURE_INPUTS, SIGNATURE_OUTPUT, read_assets, resolve_export
from ..shared.text import TextEncoder, build_tokenizer
from ..shared.tf_compat import TF_VERSION, session_config, tf
from .settings import DEFAULTS

log = logging.getLogger(__name__)


class Predictor(object):

    def __init__(self, export_dir, max_batch_size=DEFAULTS["MAX_BATCH_SIZE"], intra_op_threads=0,
                 inter_op_threads=0, micro_batch_wait_ms=None, predict_timeout_s=DEFAULTS["PREDICT_TIMEOUT_S"]):
        """`micro_batch_wait_ms` set (>= 0) coalesces concurrent callers' texts (see batcher.py)."""
        self.export_dir = resolve_export(export_dir)
        self.labels, vocab_file, self.config = read_assets(self.export_dir)
        self.max_batch_size = max_batch_size
        self.encoder = TextEncoder(build_tokenizer(vocab_file, self.config.do_lower_case),
                                   self.config.max_seq_length, self.config.truncate)
        self._graph = tf.Graph()
        self._session = tf.Session(graph=self._graph,
                                   config=session_config(intra_op_threads, inter_op_threads))
        self._load_signature()
        self._batcher = None
        if micro_batch_wait_ms is not None:
            from .batcher import MicroBatcher
            self._batcher = MicroBatcher(self.forward_sorted, max_batch_size, micro_batch_wait_ms, predict_timeout_s)
        log.info("loaded %s (%d labels, TF %s)", self.export_dir, len(self.labels), TF_VERSION)

    @property
    def healthy(self):
        """False once the micro-batcher's thread has died (requests then get 503; /ready says so)."""
        return self._batcher is None or self._batcher.alive

    @property
    def name(self):
        """'<base model>/<export timestamp>', the `model` field of API answers."""
        return "%s/%s" % (self.config.base_model, os.path.basename(self.export_dir))

    def _load_signature(self):
        with self._graph.as_default():
            try:
                meta = tf.saved_model.loader.load(self._session, ["serve"], self.export_dir)
            except Exception as exc:  # TF raises many types for a corrupt SavedModel
                raise UserError("cannot load SavedModel %s: %s" % (self.export_dir, str(exc).splitlines()[0]))
        signature = meta.signature_def.get("serving_default")
        if signature is None or SIGNATURE_OUTPUT not in signature.outputs:
            raise UserError("%s has no serving_default signature with %r" % (self.export_dir, SIGNATURE_OUTPUT))
        self._inputs = [signature.inputs[name].name for name in SIGNATURE_INPUTS]
        self._output = signature.outputs[SIGNATURE_OUTPUT].name
        n_outputs = self._graph.get_tensor_by_name(self._output).shape.as_list()[-1]
        if n_outputs != len(self.labels):
            raise UserError("%s/assets.extra/labels.json has %d labels but the model has %d outputs"
                            % (self.export_dir, len(self.labels), n_outputs))

    # --- the three stages -------------------------------------------------------------------

    def preprocess(self, texts):
        return [self.encoder.encode(text) for text in texts]

    def forward(self, id_lists):
        """Probabilities [n, labels] for word-piece id lists, in the order given."""
        if self._batcher is not None:
            return self._batcher.submit(id_lists)
        return self.forward_sorted(id_lists)

    def forward_sorted(self, id_lists):
        """Sort by length, run batches of at most max_batch_size, return rows in the given order."""
        probabilities = np.zeros((len(id_lists), len(self.labels)), np.float32)
        order = sorted(range(len(id_lists)), key=lambda i: len(id_lists[i]))
        for start in range(0, len(order), self.max_batch_size):
            chosen = order[start:start + self.max_batch_size]
            probabilities[chosen] = self.forward_batch([id_lists[i] for i in chosen])
        return probabilities

    def forward_batch(self, id_lists, width=None):
        """One session run over one batch, padded to its longest member (or to `width`)."""
        width = width or max(len(ids) for ids in id_lists)
        input_ids = np.zeros((len(id_lists), width), np.int32)
        input_mask = np.zeros_like(input_ids)
        for row, ids in enumerate(id_lists):
            input_ids[row, :len(ids)] = ids
            input_mask[row, :len(ids)] = 1
        feed = dict(zip(self._inputs, (input_ids, input_mask, np.zeros_like(input_ids))))
        return self._session.run(self._output, feed)

    def postprocess(self, probabilities):
        best = probabilities.argmax(axis=1)
        return {
            "predictions": [self.labels[i] for i in best],
            "prediction_probs": [float(p[i]) for p, i in zip(probabilities, best)],
            "probabilities": [dict(zip(self.labels, map(float, p))) for p in probabilities],
        }

    # --- conveniences -----------------------------------------------------------------------

    def predict_proba(self, texts):
        if not len(texts):
            return np.zeros((0, len(self.labels)), np.float32)
        return self.forward(self.preprocess(texts))

    def predict(self, texts):
        return self.postprocess(self.predict_proba(texts))

    def close(self):
        self._session.close()
