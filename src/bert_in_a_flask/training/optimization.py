"""The optimizer: bert's AdamW rule and learning-rate schedule, one path for one or many devices.

bert's `optimization.create_optimizer` assigns every variable itself and bumps the global step by
hand; under a distribution strategy neither is all-reduced or guarded, and the assignments fail on
mirrored variables. `AdamWeightDecay` applies the same update rule through
`tf.train.Optimizer.apply_gradients` instead: per-variable updates inside the strategy's
`update`, summed gradients, one global-step increment, and a loss-scale wrapper (AMP) can wrap it.
"""
from bert import optimization as bert_optimization

from ..shared.tf_compat import tf

# bert's create_optimizer values (run_classifier fine-tuning), defined here once.
ADAMW = dict(weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
             exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"])
CLIP_NORM = 1.0


def learning_rate_schedule(init_lr, num_train_steps, num_warmup_steps):
    """bert's schedule (create_optimizer's): linear warm-up, then linear decay to zero."""
    global_step = tf.train.get_or_create_global_step()
    decayed = tf.train.polynomial_decay(tf.constant(init_lr, tf.float32), global_step, num_train_steps,
                                        end_learning_rate=0.0, power=1.0, cycle=False)
    if not num_warmup_steps:
        return decayed
    step = tf.cast(global_step, tf.float32)
    is_warmup = tf.cast(step < num_warmup_steps, tf.float32)
    return (1.0 - is_warmup) * decayed + is_warmup * init_lr * step / float(num_warmup_steps)


class AdamWeightDecay(bert_optimization.AdamWeightDecayOptimizer):
    """bert's AdamW update rule (its `_do_use_weight_decay`, `_get_variable_name`), applied through
    the base class's `apply_gradients`. Variables are resource variables on both runtimes (see
    tf_compat) and gradients arrive dense (see create_train_op), so one apply method is all."""

    apply_gradients = tf.train.Optimizer.apply_gradients

    def _create_slots(self, var_list):
        for var in var_list:
            self._zeros_slot(var, "adam_m", self._name)
            self._zeros_slot(var, "adam_v", self._name)

    def _resource_apply_dense(self, grad, var):
        m, v = self.get_slot(var, "adam_m"), self.get_slot(var, "adam_v")
        next_m = self.beta_1 * m + (1.0 - self.beta_1) * grad
        next_v = self.beta_2 * v + (1.0 - self.beta_2) * tf.square(grad)
        update = next_m / (tf.sqrt(next_v) + self.epsilon)
        if self._do_use_weight_decay(self._get_variable_name(var.name)):
            update += self.weight_decay_rate * var
        return tf.group(var.assign_sub(self.learning_rate * update), m.assign(next_m), v.assign(next_v))


def create_train_op(loss, init_lr, num_train_steps, num_warmup_steps, use_amp=False):
    """bert's fine-tuning step: AdamW on the scheduled learning rate, gradients clipped to a global
    norm of 1.0, the global step incremented once (also under a distribution strategy)."""
    optimizer = AdamWeightDecay(learning_rate=learning_rate_schedule(init_lr, num_train_steps, num_warmup_steps),
                                **ADAMW)
    if use_amp:
        # float16 graph rewrite + dynamic loss scaling; gradients come back unscaled, and a step
        # whose gradients overflowed is skipped (the scale shrinks) by the wrapper's apply.
        optimizer = tf.train.experimental.enable_mixed_precision_graph_rewrite(optimizer, loss_scale="dynamic")
    tvars = tf.trainable_variables()
    grads_and_vars = optimizer.compute_gradients(loss, tvars)
    # Dense gradients: replicas gather different embedding rows, and TF 2's collectives need
    # equal shapes on every replica (bert's own optimizer densifies them too).
    grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g, _ in grads_and_vars]
    return optimizer.apply_gradients(zip(clip_as_on_one_device(grads), tvars),
                                     global_step=tf.train.get_or_create_global_step())


def clip_as_on_one_device(grads):
    """Clip by the global norm of the whole batch's gradient, also with replicas.

    Under a strategy, compute_gradients scales each replica's loss by 1/n, so the replicas'
    gradients sum to the gradient of the global batch's mean loss; clipping each replica's share
    alone would leave anything below norm n unclipped and change the direction. So: sum them
    here (all-reduce), clip the sum as one device would, and hand apply_gradients 1/n of it,
    which it sums over the replicas again.
    """
    replica = tf.distribute.get_replica_context()
    replicas = replica.num_replicas_in_sync if replica is not None else 1
    if replicas > 1:
        present = [i for i, g in enumerate(grads) if g is not None]  # e.g. the unused pooler under mean pooling
        grads = list(grads)
        for i, summed in zip(present, sum_over_replicas(replica, [grads[i] for i in present])):
            grads[i] = summed
    grads, _ = tf.clip_by_global_norm(grads, clip_norm=CLIP_NORM)
    return [None if g is None else g / replicas for g in grads] if replicas > 1 else grads


def sum_over_replicas(replica, tensors):
    """Each tensor summed over the replicas, in replica context. A merge_call, not
    `ReplicaContext.all_reduce`: TF 1.15 wraps that one in a custom gradient that looks up the
    mirrored variables by name and fails; these sums are never differentiated."""
    def merge(strategy, *values):
        return strategy.extended.batch_reduce_to(tf.distribute.ReduceOp.SUM, [(v, v) for v in values])

    return [tf.identity(t) for t in replica.merge_call(merge, args=tuple(tensors))]
