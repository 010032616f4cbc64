"""The estimator stage: RunConfig, Estimator and `train_and_evaluate` with the best exporter."""
import json
import logging
import os
import time

from ..shared.errors import UserError
from ..shared.tf_compat import IS_TF2, session_config, tf

log = logging.getLogger(__name__)


class ProgressHook(tf.train.SessionRunHook):
    """Logs one line every `every_n` steps: step, examples/s and the time left (the estimator
    logs the loss). Only time inside training steps counts, so evaluations do not skew the rate:
    the estimator's checkpoint hook runs its `after_run` (a save, then an evaluation and export)
    before ours, so a step that ends on a checkpoint (every `checkpoint_every`) is left out.
    """

    def __init__(self, batch_size, total_steps, every_n, checkpoint_every=0):
        self._batch_size = batch_size
        self._total_steps, self._every_n = total_steps, every_n
        self._checkpoint_every = checkpoint_every

    def begin(self):
        self._global_step = tf.train.get_global_step()
        self._step = None
        self._steps_since, self._busy_since = 0, 0.0

    def before_run(self, run_context):
        self._started = time.perf_counter()
        return tf.train.SessionRunArgs(self._global_step)

    def after_run(self, run_context, run_values):
        global_step = run_values.results
        # Count runs ourselves: bert bumps the global step in the same run that reads it.
        self._step = global_step + 1 if self._step is None else self._step + 1
        if not (self._checkpoint_every and self._step % self._checkpoint_every == 0):
            self._steps_since += 1
            self._busy_since += time.perf_counter() - self._started
        if self._steps_since and (self._steps_since >= self._every_n or self._step >= self._total_steps):
            rate = self._steps_since / max(self._busy_since, 1e-9)
            eta = max(0, self._total_steps - self._step) / rate
            log.info("step %d/%d  %.1f examples/s  ETA %s", self._step, self._total_steps,
                     rate * self._batch_size, time.strftime("%H:%M:%S", time.gmtime(eta)))
            self._steps_since, self._busy_since = 0, 0.0


CLUSTER_ROLES = ("chief", "worker", "ps", "evaluator")


class Cluster(object):
    """This process's place in a multi-worker job, read from TF_CONFIG (as any tf.estimator job).

    The chief and the workers train; the evaluator evaluates every checkpoint, exports the best one
    and writes the report, so exactly one task writes them. With "ps" tasks (the default of
    `make train_cluster`, and the one way on TF 1.15) the variables live on the parameter servers and
    each training task applies its own batches (between-graph, asynchronous); without, the training
    tasks all-reduce each step's gradients (MultiWorkerMirroredStrategy, synchronous; TF 2 only:
    TF 1.15 aborts at the first step, "Check failed: size >= 0")."""

    def __init__(self, spec, role, index):
        self.spec, self.role, self.index = spec, role, index

    @property
    def training_tasks(self):
        return len(self.spec.get("chief", [])) + len(self.spec.get("worker", []))

    @property
    def parameter_servers(self):
        return len(self.spec.get("ps", []))

    @property
    def synchronous(self):
        return not self.parameter_servers

    @property
    def shard(self):
        """(training tasks, this task's position) for reading its own share of the training data."""
        position = 0 if self.role == "chief" else self.index + 1
        return self.training_tasks, position

    @property
    def writes_outputs(self):
        return self.role == "evaluator"

    def __str__(self):
        return "%s %d of a cluster of %s" % (self.role, self.index, ", ".join(
            "%d %s" % (len(self.spec[role]), role) for role in CLUSTER_ROLES if self.spec.get(role)))


def cluster_from_env(environ=None):
    """The Cluster of TF_CONFIG, None without one; a UserError naming what is wrong with it."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not raw.strip():
        return None
    try:
        config = json.loads(raw)
        spec, task = config.get("cluster") or {}, config.get("task") or {}
    except (ValueError, AttributeError):
        raise UserError("TF_CONFIG is not a JSON object with \"cluster\" and \"task\"")
    if not spec:
        return None
    unknown = sorted(set(spec) - set(CLUSTER_ROLES))
    if unknown:
        raise UserError("TF_CONFIG: roles %s are not supported (chief, worker, ps and evaluator are)"
                        % ", ".join(unknown))
    if len(spec.get("chief", [])) != 1 or len(spec.get("evaluator", [])) > 1:
        raise UserError("TF_CONFIG: a cluster needs exactly one chief (and at most one evaluator)")
    if "evaluator" not in spec and task.get("type") != "evaluator":
        raise UserError("TF_CONFIG: add an \"evaluator\" task: it evaluates the checkpoints and exports the best")
    if not spec.get("ps") and not IS_TF2:
        raise UserError("TF_CONFIG: on TF 1.15 a cluster needs a \"ps\" task (parameter servers): its "
                        "MultiWorkerMirroredStrategy aborts at the first step")
    role, index = task.get("type"), task.get("index", 0)
    if role not in CLUSTER_ROLES or not isinstance(index, int) or not 0 <= index < max(1, len(spec.get(role, []))):
        raise UserError("TF_CONFIG: task %r is not in the cluster" % (task,))
    return Cluster(spec, role, index)


def training_devices(devices):
    """Device names to train on: "auto" is every visible GPU (none: the default device)."""
    if devices == "auto":
        gpus = tf.config.experimental.list_physical_devices("GPU")
        return ["/gpu:%d" % i for i in range(len(gpus))]
    return [d.strip() for d in devices.split(",") if d.strip()]


def build_session_config(devices, intra_op_threads=0, inter_op_threads=0, use_xla=False):
    config = session_config(intra_op_threads, inter_op_threads)
    # Names are checked by train.py's --devices (e.g. /cpu:1): the index follows the last colon.
    n_cpus = 1 + max([int(d.rsplit(":", 1)[-1]) for d in devices if "cpu" in d.lower() and ":" in d] or [0])
    if n_cpus > 1:  # virtual CPU devices, so several "devices" can be tried on a CPU box
        config.device_count["CPU"] = n_cpus
    if use_xla:
        config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1
    return config


def multi_worker_strategy():
    """MultiWorkerMirroredStrategy (collective all-reduce between the training tasks), without the
    scoped-allocator rewrite it switches on for its CollectiveReduce ops: on TF 1.15 that rewrite
    aborts the first step ("Check failed: size >= 0") when it packs our gradients into one buffer.
    On TF 2 the estimator needs graph mode before the strategy exists (it deep-copies it)."""
    import types

    from tensorflow.core.protobuf import rewriter_config_pb2

    if IS_TF2:
        tf.disable_eager_execution()
    strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy()
    update_config_proto = type(strategy.extended)._update_config_proto

    def without_scoped_allocator(extended, config_proto):
        updated = update_config_proto(extended, config_proto)
        updated.graph_options.rewrite_options.scoped_allocator_optimization = rewriter_config_pb2.RewriterConfig.OFF
        return updated

    # A bound method: the estimator deep-copies the strategy, and the copy's method binds to the copy.
    strategy.extended._update_config_proto = types.MethodType(without_scoped_allocator, strategy.extended)
    return strategy


def build_estimator(*, model_fn, model_dir, config, devices, cluster=None):
    """A checkpoint is written every `config.eval_every_steps`, and each one is evaluated.

    With more than one device the model is mirrored (one replica per device, gradients
    all-reduced); in a cluster (TF_CONFIG) the workers' replicas all-reduce over the network
    (MultiWorkerMirroredStrategy, which the estimator runs through its distribute coordinator).
    """
    devices = list(devices)
    if cluster is not None and cluster.parameter_servers:
        strategy = None  # between-graph replication: the estimator places variables on the ps tasks
    elif cluster is not None:
        strategy = multi_worker_strategy()
    else:
        strategy = tf.distribute.MirroredStrategy(devices=devices) if len(devices) > 1 else None
    run_config = tf.estimator.RunConfig(
        model_dir=model_dir,
        save_checkpoints_steps=config.eval_every_steps,
        save_summary_steps=config.save_summary_steps,
        log_step_count_steps=config.log_every_steps,
        keep_checkpoint_max=config.keep_checkpoint_max,
        tf_random_seed=config.seed,
        session_config=None if cluster is not None else build_session_config(
            devices, config.intra_op_threads, config.inter_op_threads, config.use_xla),
        train_distribute=strategy)
    return tf.estimator.Estimator(model_fn=model_fn, config=run_config)


def train_and_evaluate(*, estimator, train_input_fn, eval_input_fn, exporter, max_steps, examples_per_step, config):
    """Train to `max_steps` (resuming from the newest checkpoint), evaluating every checkpoint."""
    hooks = [ProgressHook(examples_per_step, max_steps, config.log_every_steps, config.eval_every_steps)]
    if config.early_stopping_evals:
        hooks.append(tf.estimator.experimental.stop_if_no_decrease_hook(
            estimator, "eval_loss", max_steps_without_decrease=config.early_stopping_evals * config.eval_every_steps,
            run_every_secs=None, run_every_steps=config.eval_every_steps))
    train_spec = tf.estimator.TrainSpec(train_input_fn, max_steps=max_steps, hooks=hooks)
    eval_spec = tf.estimator.EvalSpec(eval_input_fn, steps=None, exporters=[exporter],
                                      start_delay_secs=0, throttle_secs=0)
    return tf.estimator.train_and_evaluate(estimator, train_spec, eval_spec)
