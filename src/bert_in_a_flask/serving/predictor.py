"""The one inference path (app, batch CLI, report, tests): preprocess -> forward -> postprocess.

Loads an export once; `Session.run` is thread-safe, so one Predictor serves all threads.
Texts are sorted by length and cut into batches of at most `max_batch_size`, each padded
to its longest member, then put back in the caller's order. Where the cuts go is planned
(`plan_batches`): fixed runs of `max_batch_size` pad each run's short texts to its longest (the
128 titles of one request span 5 to 60 word pieces); planned batches ran 1.20x their titles/s.
"""
import logging
import os

import numpy as np

from ..shared import calibration, multilabel, windows
from ..shared.errors import UserError
from ..shared.export_contract import read_assets, resolve_export
from ..shared.text import TextEncoder, build_tokenizer
from .backends import OnnxBackend, open_backend, tf_version
from .settings import DEFAULTS

log = logging.getLogger(__name__)

# What one more forward pass costs beside its word pieces, in word pieces. onnxruntime on MiniLM-L6
# (2-core AVX2) took 3.4 ms per call + 0.20 ms per padded word piece, and small batches run their
# matrix products slower still; over 20 requests of 128 test titles, 8/16/32/64 here gave 1.13/1.18/
# 1.20/1.20x the titles/s of fixed runs of 32.
BATCH_OVERHEAD_PIECES = 32


def plan_batches(lengths, max_batch_size, overhead=BATCH_OVERHEAD_PIECES):
    """Cut points [0, ..., n] for `lengths` (ascending) into batches of at most `max_batch_size`
    that minimize the padded word pieces + `overhead` per batch: each batch is padded to its last
    (longest) member, so the best plan is found by dynamic programming over where batches end."""
    n = len(lengths)
    best, cut = [0] + [None] * n, [0] * (n + 1)  # best[j]: cost of the first j texts; cut[j]: its last batch's start
    for end in range(1, n + 1):
        width = lengths[end - 1]
        best[end], cut[end] = min((best[start] + (end - start) * width + overhead, start)
                                  for start in range(max(0, end - max_batch_size), end))
    cuts = [n]
    while cuts[-1] > 0:
        cuts.append(cut[cuts[-1]])
    return cuts[::-1]


class QueuePolicy(object):
    """How a serving worker queues requests (batcher.py): coalesce them into shared passes (waiting
    up to `wait_ms` for company) or not, each caller's deadline, the bound on admitted texts, and
    who hears of it (`events`, the app's metrics)."""

    def __init__(self, coalesce=DEFAULTS["MICRO_BATCHING"], wait_ms=DEFAULTS["MICRO_BATCH_WAIT_MS"],
                 timeout_s=DEFAULTS["PREDICT_TIMEOUT_S"], max_pending_texts=DEFAULTS["MAX_PENDING_TEXTS"],
                 events=None):
        self.coalesce, self.wait_ms, self.timeout_s = coalesce, wait_ms, timeout_s
        self.max_pending_texts, self.events = max_pending_texts, events


class Predictor(object):

    def __init__(self, export_dir, max_batch_size=DEFAULTS["MAX_BATCH_SIZE"], intra_op_threads=0,
                 inter_op_threads=0, queue=None, backend=DEFAULTS["BACKEND"], quantize=DEFAULTS["QUANTIZE"],
                 onnx_file=None):
        """`queue` (a QueuePolicy) puts a serving worker's queue in front of the forward pass (see
        batcher.py); without it callers run their passes themselves (the CLI, the report).
        `backend` is auto, tf or onnx, `quantize` none or int8 (see backends.py). `onnx_file` runs
        that ONNX file instead, unchecked: a conversion's candidate, compared before it is kept."""
        self.export_dir = resolve_export(export_dir)
        self.labels, vocab_file, self.config = read_assets(self.export_dir)
        self.max_batch_size = max_batch_size
        self.encoder = TextEncoder(build_tokenizer(vocab_file, self.config.do_lower_case),
                                   self.config.max_seq_length, self.config.truncate, self.config.window_stride,
                                   self.config.max_windows)
        if onnx_file is not None:
            self.backend = OnnxBackend(onnx_file, intra_op_threads, inter_op_threads)
        else:
            self.backend = open_backend(backend, self.export_dir, self.config.onnx, intra_op_threads,
                                        inter_op_threads, quantize=quantize)
        if self.backend.n_outputs is not None and self.backend.n_outputs != len(self.labels):
            self.backend.close()
            raise UserError("%s/assets.extra/labels.json has %d labels but the model has %d outputs"
                            % (self.export_dir, len(self.labels), self.backend.n_outputs))
        self._batcher = None
        if queue is not None:
            from .batcher import MicroBatcher
            self._batcher = MicroBatcher(self.forward_sorted, max_batch_size, queue.wait_ms, queue.timeout_s,
                                         max_pending_texts=queue.max_pending_texts, coalesce=queue.coalesce,
                                         events=queue.events)
        loaded_tf = tf_version()
        log.info("loaded %s (%d labels, backend %s%s)", self.export_dir, len(self.labels), self.backend.name,
                 ", TF %s" % loaded_tf if loaded_tf else "")

    @property
    def healthy(self):
        """False once the micro-batcher's thread has died (requests then get 503; /ready says so)."""
        return self._batcher is None or self._batcher.alive

    @property
    def backend_name(self):
        return self.backend.name

    @property
    def name(self):
        """'<base model>/<export timestamp> (<backend>)', the `model` field of API answers."""
        return "%s/%s (%s)" % (self.config.base_model, os.path.basename(self.export_dir), self.backend.name)

    # --- the three stages -------------------------------------------------------------------

    def preprocess(self, texts):
        return [self.encoder.encode(text) for text in texts]

    def forward(self, id_lists):
        """Probabilities [n, labels] for word-piece id lists, in the order given."""
        if self._batcher is not None:
            return self._batcher.submit(id_lists)
        return self.forward_sorted(id_lists)

    def forward_sorted(self, id_lists):
        """Sort by length, run the planned batches (at most max_batch_size each), return rows in the given order."""
        probabilities = np.zeros((len(id_lists), len(self.labels)), np.float32)
        order = sorted(range(len(id_lists)), key=lambda i: len(id_lists[i]))
        cuts = plan_batches([len(id_lists[i]) for i in order], self.max_batch_size)
        for start, end in zip(cuts, cuts[1:]):
            chosen = order[start:end]
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
        return self.backend.run(input_ids, input_mask, np.zeros_like(input_ids))

    def postprocess(self, probabilities, min_confidence=0.0, coverage=None):
        """The answer: the top label per text (None under `min_confidence`, with a reason), its
        probability, every label's; with `coverage` (one of coverage_levels()), the conformal
        prediction set per text. A multi-label export answers multi_label_answer's."""
        if self.multi_label:
            return self.multi_label_answer(probabilities)
        best = probabilities.argmax(axis=1)
        top = [float(p[i]) for p, i in zip(probabilities, best)]
        answer = {
            "predictions": [self.labels[i] if score >= min_confidence else None for i, score in zip(best, top)],
            "prediction_probs": top,
            "probabilities": [dict(zip(self.labels, map(float, p))) for p in probabilities],
        }
        if min_confidence > 0:
            answer["min_confidence"] = min_confidence
            answer["reasons"] = [None if score >= min_confidence else
                                 "top probability %.3f is under min_confidence %g" % (score, min_confidence)
                                 for score in top]
        if coverage is not None:
            sets = calibration.prediction_sets(probabilities, self.coverage_quantiles()[coverage])
            answer["coverage"] = coverage
            answer["prediction_sets"] = [[self.labels[i] for i in chosen] for chosen in sets]
        return answer

    def multi_label_answer(self, probabilities):
        """Per text the list of labels whose probability reaches the label's threshold (most probable
        first; possibly empty), their probabilities, and every label's (independent, not summing to 1)."""
        chosen = self.chosen_labels(probabilities)
        return {
            "predictions": [[self.labels[i] for i in row] for row in chosen],
            "prediction_probs": [[float(p[i]) for i in row] for p, row in zip(probabilities, chosen)],
            "probabilities": [dict(zip(self.labels, map(float, p))) for p in probabilities],
        }

    def chosen_labels(self, probabilities):
        """Per text the label indices a multi-label export chooses, most probable first."""
        decided = multilabel.decide(probabilities, self.thresholds())
        return [[int(i) for i in np.argsort(-p, kind="stable") if row[i]] for p, row in zip(probabilities, decided)]

    def label_sets(self, probabilities):
        """Per text the set of labels this export answers: its top label, or a multi-label export's choice."""
        if self.multi_label:
            return [{self.labels[i] for i in row} for row in self.chosen_labels(probabilities)]
        return [{self.labels[i]} for i in probabilities.argmax(axis=1)]

    # --- what the export's calibration offers ---------------------------------------------------

    @property
    def multi_label(self):
        return self.config.multi_label

    def thresholds(self):
        """A multi-label export's decision threshold per label (labels.json order)."""
        return multilabel.thresholds_of(self.config.calibration, len(self.labels))

    @property
    def calibrated(self):
        return bool(self.config.calibration)

    def confidence_floor(self, setting):
        """The floor a MIN_CONFIDENCE setting means for this export: "export" is its calibration's
        (0 for an uncalibrated export), a number is itself."""
        if self.multi_label:  # labels are chosen by their own thresholds, never by a floor on the top one
            return 0.0
        if setting == "export":
            return float(self.config.calibration.get("min_confidence", 0.0))
        return float(setting)

    def coverage_quantiles(self):
        """{coverage level: conformal quantile} the export stores (empty when uncalibrated)."""
        stored = self.config.calibration.get("conformal", {}).get("quantiles", {})
        return {float(level): float(q) for level, q in stored.items()}

    # --- conveniences -----------------------------------------------------------------------

    @property
    def windowed(self):
        """True when a text is classified as its windows (--truncate windows), pooled."""
        return self.config.truncate == "windows"

    def predict_proba(self, texts, client_gone=None, max_sequences=None):
        """Probabilities [n, labels]. `max_sequences`: the most sequences (windows, for a windowed
        export; texts otherwise) one call may run, else a 413."""
        if not len(texts):
            return np.zeros((0, len(self.labels)), np.float32)
        if self.windowed:
            return self._windowed_proba(texts, client_gone, max_sequences)
        if self._batcher is not None:  # admitted before tokenizing: a refused request costs little
            return self._batcher.run(len(texts), lambda: self.preprocess(texts), client_gone)
        return self.forward_sorted(self.preprocess(texts))

    def window_ids(self, texts):
        """(every window's ids, the text each is of) for a windowed export."""
        return windows.owners_of([self.encoder.encode_windows(text) for text in texts])

    def _windowed_proba(self, texts, client_gone, max_sequences):
        """A windowed export's answer: its windows run like texts (and count as such in the queue's
        bound), their probabilities pooled per text. Tokenized before admission: the count is the cost."""
        flat, owners = self.window_ids(texts)
        if max_sequences is not None and len(flat) > max_sequences:
            raise UserError("the texts make %d windows of %d word pieces; at most %d per request"
                            % (len(flat), self.config.max_seq_length, max_sequences), 413)
        if self._batcher is not None:
            probabilities = self._batcher.run(len(flat), lambda: flat, client_gone)
        else:
            probabilities = self.forward_sorted(flat)
        return windows.pool(probabilities, owners, len(texts), self.config.window_pooling, self.multi_label)

    def predict(self, texts, client_gone=None, min_confidence=0.0, coverage=None, max_sequences=None):
        return self.postprocess(self.predict_proba(texts, client_gone, max_sequences), min_confidence, coverage)

    def close(self):
        if self._batcher is not None:
            self._batcher.stop()
        self.backend.close()
