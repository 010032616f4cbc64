"""The best-checkpoint exporter: keeps the lowest validation loss, across restarts."""
import os

from utils.best_checkpoints_exporter import BestCheckpointsExporter


class FakeEstimator(object):
    """Writes a stand-in export the way Estimator.export_saved_model names them."""

    def __init__(self):
        self.exports = 0

    def export_saved_model(self, export_root, serving_input_receiver_fn, assets_extra=None, checkpoint_path=None):
        self.exports += 1
        path = os.path.join(export_root, str(1000 + self.exports))
        os.makedirs(path)
        with open(os.path.join(path, "saved_model.pb"), "w") as handle:
            handle.write(checkpoint_path)
        return path.encode()


def make_exporter(tmp_path):
    return BestCheckpointsExporter(lambda: None, str(tmp_path / "exports"), str(tmp_path),
                                   assets_builder=lambda **extra: {})


def evaluate(exporter, estimator, step, loss):
    return exporter.export(estimator, "unused", "ckpt-%d" % step,
                           {"eval_loss": loss, "accuracy": 0.5, "global_step": step}, False)


def test_first_evaluation_exports_even_with_a_high_loss(tmp_path):
    exporter, estimator = make_exporter(tmp_path), FakeEstimator()
    path = evaluate(exporter, estimator, 10, 99.0)
    assert path and os.path.isfile(os.path.join(path, "saved_model.pb"))
    assert exporter.best()["loss"] == 99.0 and exporter.best()["export_dir"] == path


def test_lower_loss_replaces_and_higher_or_equal_keeps(tmp_path):
    exporter, estimator = make_exporter(tmp_path), FakeEstimator()
    evaluate(exporter, estimator, 10, 1.0)
    better = evaluate(exporter, estimator, 20, 0.5)
    assert better and exporter.best()["step"] == 20
    assert evaluate(exporter, estimator, 30, 0.7) is None
    assert evaluate(exporter, estimator, 40, 0.5) is None
    assert exporter.best()["export_dir"] == better and estimator.exports == 2


def test_after_a_restart_a_worse_loss_keeps_the_old_best(tmp_path):
    first = make_exporter(tmp_path)
    best_path = evaluate(first, FakeEstimator(), 10, 0.3)
    restarted, estimator = make_exporter(tmp_path), FakeEstimator()  # a new process, same folders
    assert evaluate(restarted, estimator, 20, 0.4) is None
    assert estimator.exports == 0
    assert restarted.best()["export_dir"] == best_path and restarted.best()["loss"] == 0.3
