"""The test-split report of a multi-label export (--label-separator): micro- and macro-F1 and subset
accuracy at the export's tuned thresholds and at a fixed 0.5, per-label precision/recall/F1/support,
and a TF-IDF + one-vs-rest linear SVM baseline on the same split (metrics.json,
classification_report.txt)."""
import logging
import os

import numpy as np
from sklearn.metrics import classification_report, precision_recall_fscore_support
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MultiLabelBinarizer
from sklearn.svm import LinearSVC

from ..shared import multilabel
from ..shared.files import save_json
from .data import label_sets

log = logging.getLogger(__name__)


def tfidf_one_vs_rest_baseline(splits, features):
    """set_scores of one linear SVM per label on TF-IDF `features`, trained on the training split and
    scored on the test split: what BERT has to beat."""
    binarizer = MultiLabelBinarizer(classes=list(splits.labels))
    y_train = binarizer.fit_transform(label_sets(splits.train, splits.label_separator))
    pipeline = make_pipeline(features, OneVsRestClassifier(LinearSVC(C=1.0)))
    pipeline.fit(splits.train["text"], y_train)
    y_test = binarizer.transform(label_sets(splits.test, splits.label_separator))
    return multilabel.set_scores(y_test, pipeline.predict(splits.test["text"]).astype(bool))


def per_label_scores(y, chosen, labels):
    precision, recall, f1, support = precision_recall_fscore_support(y, chosen, labels=None, average=None,
                                                                     zero_division=0)
    return {label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)}


def mean_bce(y, probabilities):
    """The test loss as training measures it: binary cross-entropy summed over labels, mean over texts."""
    p = np.clip(np.asarray(probabilities, np.float64), 1e-7, 1 - 1e-7)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(axis=1)))


def write_report(predictor, splits, report_dir, baseline):
    """Evaluate the multi-label export on the test split, write metrics.json and
    classification_report.txt; returns the metrics. `baseline`: tfidf_one_vs_rest_baseline's."""
    labels = predictor.labels
    y = multilabel.multi_hot(label_sets(splits.test, splits.label_separator), labels).astype(bool)
    probabilities = predictor.predict_proba(list(splits.test["text"]))
    thresholds = multilabel.thresholds_of(predictor.config.calibration, len(labels))
    chosen = multilabel.decide(probabilities, thresholds)
    per_label = per_label_scores(y, chosen, labels)
    supported = {label: scores["recall"] for label, scores in per_label.items() if scores["support"]}
    worst = min(supported, key=supported.get)
    at_half = multilabel.set_scores(y, multilabel.decide(probabilities, [0.5] * len(labels)))
    metrics = dict(multilabel.set_scores(y, chosen), multi_label=True, at_fixed_threshold=dict(at_half, threshold=0.5),
                   thresholds=dict(zip(labels, thresholds)),
                   tuned=predictor.config.calibration.get("method") == "thresholds",
                   worst_class_recall={"label": worst, "recall": supported[worst]},
                   loss=mean_bce(y, probabilities), per_class=per_label,
                   labels_per_text={"true": float(y.sum(axis=1).mean()), "predicted": float(chosen.sum(axis=1).mean())},
                   tfidf_one_vs_rest=baseline, n_examples=int(len(y)), export_dir=predictor.export_dir,
                   counts={"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)})
    os.makedirs(report_dir, exist_ok=True)
    save_json(metrics, os.path.join(report_dir, "metrics.json"))
    with open(os.path.join(report_dir, "classification_report.txt"), "w") as handle:
        handle.write(classification_report(y, chosen, target_names=labels, digits=4, zero_division=0))
    log.info("test micro-F1: BERT %.4f at the tuned thresholds (%.4f at 0.5) | TF-IDF + one-vs-rest SVM %.4f  "
             "(macro-F1 %.4f, subset accuracy %.4f); report in %s", metrics["micro_f1"],
             metrics["at_fixed_threshold"]["micro_f1"], baseline["micro_f1"], metrics["macro_f1"],
             metrics["subset_accuracy"], report_dir)
    return metrics
