"""The report's calibration section on the test split: ECE and NLL of the raw and the calibrated
probabilities, the ECE a calibrated model would show by chance (beside the served ECE), accuracy at the export's
confidence floor, the conformal sets' coverage and size at each stored level, and a reliability
diagram (reliability_diagram.png)."""
import numpy as np

from ..shared import calibration


def calibration_metrics(y_true, probabilities, record):
    """The `calibration` part of metrics.json for the export's (calibrated) test probabilities and its
    `calibration` record; {"calibrated": False} for an uncalibrated export."""
    if not record:
        return {"calibrated": False, "ece": calibration.ece(probabilities, y_true),
                "ece_from_sampling": calibration.ece_from_sampling(probabilities),
                "nll": calibration.nll(probabilities, y_true)}
    raw = calibration.softmax_at(calibration.log_probabilities(probabilities), 1.0 / record["temperature"])
    top, right = probabilities.max(axis=1), probabilities.argmax(axis=1) == y_true
    accepted = top >= record["min_confidence"]
    sets = {}
    for level, quantile in sorted(record["conformal"]["quantiles"].items(), key=lambda kv: float(kv[0])):
        held, size = calibration.set_coverage(calibration.prediction_sets(probabilities, quantile), y_true)
        sets[level] = {"coverage": held, "mean_set_size": size}
    return {
        "calibrated": True, "temperature": record["temperature"],
        "ece_before": calibration.ece(raw, y_true), "ece_after": calibration.ece(probabilities, y_true),
        "ece_from_sampling": calibration.ece_from_sampling(probabilities),
        "nll_before": calibration.nll(raw, y_true), "nll_after": calibration.nll(probabilities, y_true),
        "labels_unchanged": bool((raw.argmax(axis=1) == probabilities.argmax(axis=1)).all()),
        "min_confidence": record["min_confidence"], "accepted_share": float(accepted.mean()),
        "accuracy_accepted": float(right[accepted].mean()) if accepted.any() else None,
        "conformal_sets": sets,
    }


def by_chance(from_sampling):
    return "a calibrated model's by chance: %.4f, 95 %% under %.4f" % (from_sampling["mean"], from_sampling["p95"])


def describe(metrics):
    """One log line of the section."""
    if not metrics["calibrated"]:
        return "uncalibrated (--calibrate none): ECE %.4f (%s), NLL %.4f" % (
            metrics["ece"], by_chance(metrics["ece_from_sampling"]), metrics["nll"])
    sets = ", ".join("%s: %.1f%% (size %.2f)" % (level, 100 * s["coverage"], s["mean_set_size"])
                     for level, s in metrics["conformal_sets"].items())
    accuracy = metrics["accuracy_accepted"]
    return ("calibration on the test split: T %.3f, ECE %.4f -> %.4f (%s), NLL %.4f -> "
            "%.4f; floor %.3f accepts %.1f%% at %s accuracy; conformal coverage %s" % (
                metrics["temperature"], metrics["ece_before"], metrics["ece_after"],
                by_chance(metrics["ece_from_sampling"]), metrics["nll_before"], metrics["nll_after"],
                metrics["min_confidence"], 100 * metrics["accepted_share"],
                "-" if accuracy is None else "%.2f%%" % (100 * accuracy), sets))


def plot_reliability(y_true, probabilities, record, path):
    """Accuracy against confidence per equal-width bin, raw and calibrated, with the counts."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [("calibrated (T %.2f)" % record["temperature"], probabilities)] if record else []
    if record:
        curves.insert(0, ("raw softmax", calibration.softmax_at(calibration.log_probabilities(probabilities),
                                                                 1.0 / record["temperature"])))
    else:
        curves = [("softmax (uncalibrated)", probabilities)]
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(6, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    width = 1.0 / calibration.ECE_BINS
    for offset, (name, p) in enumerate(curves):
        rows = calibration.reliability(p, y_true)
        filled = [(conf, acc) for n, conf, acc in rows if n]
        ax.plot([c for c, _ in filled], [a for _, a in filled], marker="o",
                label="%s, ECE %.3f" % (name, calibration.ece(p, y_true)))
        centers = (np.arange(calibration.ECE_BINS) + 0.5) * width
        counts.bar(centers + (offset - 0.5) * width / 2, [n for n, _, _ in rows], width=width / 2, label=name)
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability on the test split (%d bins)" % calibration.ECE_BINS)
    ax.legend(loc="upper left")
    counts.set_xlabel("confidence (top probability)")
    counts.set_ylabel("texts")
    counts.set_yscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
