"""The optimizer: bert's AdamW rule and learning-rate schedule, one path for one or many devices.

bert's `optimization.create_optimizer` assigns every variable itself and bumps the global step by
hand; under a distribution strategy neither is all-reduced or guarded, and the assignments fail on
mirrored variables. `AdamWeightDecay` applies the same update rule through
`tf.train.Optimizer.apply_gradients` instead: per-variable updates inside the strategy's
`update`, summed gradients, one global-step increment, and a loss-scale wrapper (AMP) can wrap it.
"""
import re

from bert import optimization as bert_optimization

from ..shared.tf_compat import tf

# bert's create_optimizer values (run_classifier fine-tuning), defined here once.
ADAMW = dict(weight_decay_rate=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
             exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"])
# Tables whose rows are looked up (a gather): a step updates only the rows the batch used.
ROWS_UPDATED_WHEN_USED = ["word_embeddings"]
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
    tf_compat).

    The step runs as TF's fused Adam kernel instead of bert's ten element-wise ops per variable:
    those ops made a pass over memory each, which for MiniLM-L6's 23 M weights cost more than the
    forward pass on a 2-core CPU. bert's rule is Adam without bias correction plus decoupled weight
    decay:

        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
        w <- w - lr (m / (sqrt(v) + eps) + wd w)

    `ResourceApplyAdam` with beta powers of 0 is exactly the first part (its step size
    lr sqrt(1 - b2^t) / (1 - b1^t) is then lr), and the decay term, which uses w before the
    update, is applied first as w <- w (1 - lr wd).

    The word-embedding table (half of MiniLM's weights) is the exception: a batch of titles uses a
    few hundred of its 30,522 rows, and the same rule applied only to those rows (a "lazy" Adam, as
    TF's LazyAdamOptimizer and PyTorch's SparseAdam do) leaves the other rows, their moments and
    their decay alone for that step, instead of three passes over 47 MB per step. The rows a step
    updates are those with a non-zero gradient, found the same way whether the gradient arrives
    sparse (one device) or dense (summed over replicas), so one device and N replicas still take
    the same step.
    """

    apply_gradients = tf.train.Optimizer.apply_gradients

    def __init__(self, rows_updated_when_used=None, **kwargs):
        super(AdamWeightDecay, self).__init__(**kwargs)
        self.rows_updated_when_used = rows_updated_when_used or []

    def _create_slots(self, var_list):
        for var in var_list:
            self._zeros_slot(var, "adam_m", self._name)
            self._zeros_slot(var, "adam_v", self._name)

    def _updates_used_rows_only(self, var):
        name = self._get_variable_name(var.name)
        return any(re.search(pattern, name) is not None for pattern in self.rows_updated_when_used)

    def _resource_apply_dense(self, grad, var):
        if self._updates_used_rows_only(var):
            used = tf.reshape(tf.where(tf.reduce_any(tf.not_equal(grad, 0.0), axis=1)), [-1])
            return self._apply_to_rows(tf.gather(grad, used), var, used)
        dtype = var.dtype.base_dtype
        learning_rate = tf.cast(self.learning_rate, dtype)
        decayed = []
        if self._do_use_weight_decay(self._get_variable_name(var.name)):
            # w (1 - lr wd) as a new buffer that replaces w: one pass; an in-place update that
            # also reads w would first copy it (the read still holds the buffer).
            decayed = [var.assign(var.read_value() * (1.0 - learning_rate * self.weight_decay_rate),
                                  read_value=False)]
        with tf.control_dependencies(decayed):
            no_bias_correction = tf.constant(0.0, dtype)
            return tf.raw_ops.ResourceApplyAdam(
                var=var.handle, m=self.get_slot(var, "adam_m").handle, v=self.get_slot(var, "adam_v").handle,
                beta1_power=no_bias_correction, beta2_power=no_bias_correction, lr=learning_rate,
                beta1=tf.constant(self.beta_1, dtype), beta2=tf.constant(self.beta_2, dtype),
                epsilon=tf.constant(self.epsilon, dtype), grad=grad)

    def _resource_apply_sparse(self, grad, var, indices):
        """A gather's gradient (distinct indices: the base class sums repeated ones first)."""
        if not self._updates_used_rows_only(var):
            rows = tf.shape(var, out_type=indices.dtype)[0]
            return self._resource_apply_dense(tf.math.unsorted_segment_sum(grad, indices, rows), var)
        used = tf.reduce_any(tf.not_equal(grad, 0.0), axis=1)  # e.g. [PAD]'s row: masked out, gradient 0
        return self._apply_to_rows(tf.boolean_mask(grad, used), var, tf.boolean_mask(indices, used))

    def _apply_to_rows(self, grad, var, indices):
        """bert's rule on the rows `indices` of var, its moments and its decay; the other rows stay."""
        dtype = var.dtype.base_dtype
        m, v = self.get_slot(var, "adam_m"), self.get_slot(var, "adam_v")
        m_rows = self.beta_1 * tf.gather(m, indices) + (1.0 - self.beta_1) * grad
        v_rows = self.beta_2 * tf.gather(v, indices) + (1.0 - self.beta_2) * tf.square(grad)
        step = m_rows / (tf.sqrt(v_rows) + self.epsilon)
        if self._do_use_weight_decay(self._get_variable_name(var.name)):
            step += self.weight_decay_rate * tf.gather(var, indices)
        learning_rate = tf.cast(self.learning_rate, dtype)
        return tf.group(tf.raw_ops.ResourceScatterUpdate(resource=m.handle, indices=indices, updates=m_rows),
                        tf.raw_ops.ResourceScatterUpdate(resource=v.handle, indices=indices, updates=v_rows),
                        tf.raw_ops.ResourceScatterSub(resource=var.handle, indices=indices,
                                                      updates=learning_rate * step))


def create_train_op(loss, init_lr, num_train_steps, num_warmup_steps, use_amp=False):
    """bert's fine-tuning step: AdamW on the scheduled learning rate, gradients clipped to a global
    norm of 1.0, the global step incremented once (also under a distribution strategy)."""
    optimizer = AdamWeightDecay(learning_rate=learning_rate_schedule(init_lr, num_train_steps, num_warmup_steps),
                                rows_updated_when_used=ROWS_UPDATED_WHEN_USED, **ADAMW)
    if use_amp:
        # float16 graph rewrite + dynamic loss scaling; gradients come back unscaled, and a step
        # whose gradients overflowed is skipped (the scale shrinks) by the wrapper's apply.
        optimizer = tf.train.experimental.enable_mixed_precision_graph_rewrite(optimizer, loss_scale="dynamic")
    tvars = tf.trainable_variables()
    grads = [g for g, _ in optimizer.compute_gradients(loss, tvars)]
    grads = clip_as_on_one_device(grads)
    return optimizer.apply_gradients(zip(grads, tvars), global_step=tf.train.get_or_create_global_step())


def clip_as_on_one_device(grads):
    """Clip by the global norm of the whole batch's gradient, also with replicas.

    Under a strategy, compute_gradients scales each replica's loss by 1/n, so the replicas'
    gradients sum to the gradient of the global batch's mean loss; clipping each replica's share
    alone would leave anything below norm n unclipped and change the direction. So: sum them
    here (all-reduce), clip the sum as one device would, and hand apply_gradients 1/n of it,
    which it sums over the replicas again.

    On one device the word-embedding gradient stays sparse through the clipping (its rows summed
    per distinct word piece: a few hundred rows, not 30,522), so the norm and the scaling do not
    make two passes over a dense copy of the whole table.
    """
    replica = tf.distribute.get_replica_context()
    replicas = replica.num_replicas_in_sync if replica is not None else 1
    if replicas > 1:
        # replicas gather different rows, and TF 2's collectives need equal shapes on every replica
        grads = densified(grads)
        present = [i for i, g in enumerate(grads) if g is not None]  # e.g. the unused pooler under mean pooling
        for i, summed in zip(present, sum_over_replicas(replica, [grads[i] for i in present])):
            grads[i] = summed
    else:
        grads = [rows_summed_per_index(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
    grads, _ = tf.clip_by_global_norm(grads, clip_norm=CLIP_NORM)
    return [None if g is None else g / replicas for g in grads] if replicas > 1 else grads


def densified(grads):
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]


def rows_summed_per_index(slices):
    """The same gradient with each index once: a gather's gradient repeats a row per occurrence,
    and the norm of the table's gradient is that of the summed rows."""
    indices, positions = tf.unique(slices.indices)
    values = tf.math.unsorted_segment_sum(slices.values, positions, tf.shape(indices)[0])
    return tf.IndexedSlices(values, indices, slices.dense_shape)


def sum_over_replicas(replica, tensors):
    """Each tensor summed over the replicas, in replica context. A merge_call, not
    `ReplicaContext.all_reduce`: TF 1.15 wraps that one in a custom gradient that looks up the
    mirrored variables by name and fails; these sums are never differentiated."""
    def merge(strategy, *values):
        return strategy.extended.batch_reduce_to(tf.distribute.ReduceOp.SUM, [(v, v) for v in values])

    return [tf.identity(t) for t in replica.merge_call(merge, args=tuple(tensors))]
