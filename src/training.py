"""The estimator stage: RunConfig, Estimator and `train_and_evaluate` with the best exporter."""
import logging

from predictor import session_config
from tf_compat import tf

log = logging.getLogger(__name__)


def build_estimator(model_fn, model_dir, eval_every_steps, save_summary_steps=100,
                    log_every_steps=100, keep_checkpoint_max=3, seed=42,
                    intra_op_threads=0, inter_op_threads=0):
    """A checkpoint is written every `eval_every_steps`, and each one is evaluated."""
    run_config = tf.estimator.RunConfig(
        model_dir=model_dir,
        save_checkpoints_steps=eval_every_steps,
        save_summary_steps=save_summary_steps,
        log_step_count_steps=log_every_steps,
        keep_checkpoint_max=keep_checkpoint_max,
        tf_random_seed=seed,
        session_config=session_config(intra_op_threads, inter_op_threads))
    return tf.estimator.Estimator(model_fn=model_fn, config=run_config)


def train_and_evaluate(estimator, train_input_fn, eval_input_fn, max_steps, exporter,
                       eval_every_steps, early_stopping_evals=0):
    """Train to `max_steps` (resuming from the newest checkpoint), evaluating every checkpoint."""
    hooks = []
    if early_stopping_evals:
        hooks.append(tf.estimator.experimental.stop_if_no_decrease_hook(
            estimator, "eval_loss", max_steps_without_decrease=early_stopping_evals * eval_every_steps,
            run_every_secs=None, run_every_steps=eval_every_steps))
    train_spec = tf.estimator.TrainSpec(train_input_fn, max_steps=max_steps, hooks=hooks)
    eval_spec = tf.estimator.EvalSpec(eval_input_fn, steps=None, exporters=[exporter],
                                      start_delay_secs=0, throttle_secs=0)
    return tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
