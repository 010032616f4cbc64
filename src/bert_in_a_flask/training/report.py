"""Test-split report for an export: metrics.json, classification_report.txt,
confusion_matrix.png (row-normalised), reliability_diagram.png and the calibration figures
(report_calibration.py), and a TF-IDF + linear SVM baseline on the same split. A multi-label
export's report is report_multilabel.py's."""
import logging
import os

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import (accuracy_score, classification_report, confusion_matrix, f1_score,
                             log_loss)
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

from ..shared.files import save_json
from . import report_calibration, report_multilabel

log = logging.getLogger(__name__)


def tfidf_features():
    """TF-IDF on character 2-5-grams: the best of word and character n-grams on the SO-titles
    validation split."""
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)


def tfidf_svm_baseline(train, test):
    """Accuracy of TF-IDF with a linear SVM: what BERT has to beat."""
    pipeline = make_pipeline(tfidf_features(), LinearSVC(C=1.0))
    pipeline.fit(train["text"], train["label"])
    return float(accuracy_score(test["label"], pipeline.predict(test["text"])))


def tfidf_baseline(splits):
    """The report's baseline on these splits: the linear SVM's test accuracy, or for several labels
    per text the one-vs-rest SVMs' test scores (report_multilabel.py)."""
    if splits.label_separator is not None:
        return report_multilabel.tfidf_one_vs_rest_baseline(splits, tfidf_features())
    return tfidf_svm_baseline(splits.train, splits.test)


def classification_metrics(y_true, probabilities, labels):
    ids = list(range(len(labels)))
    y_pred = probabilities.argmax(axis=1)
    per_class = classification_report(y_true, y_pred, labels=ids, target_names=labels,
                                      output_dict=True, zero_division=0)
    recalls = {label: per_class[label]["recall"] for label in labels if per_class[label]["support"]}
    worst = min(recalls, key=recalls.get)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "worst_class_recall": {"label": worst, "recall": float(recalls[worst])},
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "loss": float(log_loss(y_true, np.clip(probabilities, 1e-7, 1.0), labels=ids)),
        "per_class": {label: {"precision": per_class[label]["precision"],
                              "recall": per_class[label]["recall"],
                              "f1": per_class[label]["f1-score"],
                              "support": int(per_class[label]["support"])} for label in labels},
        "n_examples": int(len(y_true)),
    }


def plot_confusion_matrix(y_true, y_pred, labels, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(labels)))).astype(float)
    matrix /= np.maximum(matrix.sum(axis=1, keepdims=True), 1.0)
    size = max(5.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(labels)))
    ax.set_yticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=90)
    ax.set_yticklabels(labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix on the test split (each row sums to 1)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(predictor, splits, report_dir, baseline=None):
    """Evaluate the export on the test split and write the report files; returns the metrics.
    `baseline`: tfidf_baseline's, when the caller computed it already."""
    os.makedirs(report_dir, exist_ok=True)
    if baseline is None:
        baseline = tfidf_baseline(splits)
    if predictor.config.multi_label:
        return report_multilabel.write_report(predictor, splits, report_dir, baseline)
    label_ids = {label: i for i, label in enumerate(predictor.labels)}
    y_true = np.array([label_ids[label] for label in splits.test["label"]])
    probabilities = predictor.predict_proba(list(splits.test["text"]))
    metrics = classification_metrics(y_true, probabilities, predictor.labels)
    metrics["tfidf_svm_accuracy"] = baseline
    metrics["calibration"] = report_calibration.calibration_metrics(y_true, probabilities,
                                                                    predictor.config.calibration)
    metrics["export_dir"] = predictor.export_dir
    metrics["counts"] = {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}
    save_json(metrics, os.path.join(report_dir, "metrics.json"))
    with open(os.path.join(report_dir, "classification_report.txt"), "w") as handle:
        handle.write(classification_report(y_true, probabilities.argmax(axis=1),
                                           labels=list(range(len(predictor.labels))),
                                           target_names=predictor.labels, digits=4, zero_division=0))
    plot_confusion_matrix(y_true, probabilities.argmax(axis=1), predictor.labels,
                          os.path.join(report_dir, "confusion_matrix.png"))
    report_calibration.plot_reliability(y_true, probabilities, predictor.config.calibration,
                                        os.path.join(report_dir, "reliability_diagram.png"))
    log.info(report_calibration.describe(metrics["calibration"]))
    log.info("test accuracy: BERT %.4f | TF-IDF + linear SVM %.4f  (macro-F1 %.4f, worst recall %.4f: %s, "
             "loss %.4f); report in %s", metrics["accuracy"], metrics["tfidf_svm_accuracy"], metrics["macro_f1"],
             metrics["worst_class_recall"]["recall"], metrics["worst_class_recall"]["label"], metrics["loss"],
             report_dir)
    return metrics
