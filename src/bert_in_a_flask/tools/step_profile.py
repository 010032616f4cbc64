"""Where a training step's time goes: the trainer's own graph (model_fn TRAIN, length-bucketed
records, AdamW), run in a plain session with TF's per-op timings (RunMetadata step stats).

    python -m bert_in_a_flask.tools.step_profile --bert-dir DIR --train-file train.csv [--steps 8]

Op times are summed per part of the step (forward, backward, optimizer) and per kind of op
(matrix products vs element-wise and the rest). Ops run two at a time on two cores, so the sums
exceed the wall time: the shares are what to read.
"""
import collections
import sys
import tempfile
import time

PARTS = (  # (part, predicate on the node name), first match wins
    ("optimizer: AdamW + clipping", lambda name: name.startswith(("AdamWeightDecay", "clip_by_global_norm",
                                                                  "global_norm", "UnsortedSegmentSum"))),
    ("backward", lambda name: name.startswith("gradients")),
    ("input pipeline", lambda name: name.startswith(("IteratorGetNext", "OneShotIterator", "Iterator"))),
    ("forward", lambda name: True),
)
MATRIX_OPS = {"MatMul", "BatchMatMul", "BatchMatMulV2", "Einsum", "_MklMatMul", "_FusedMatMul", "_MklBatchMatMulV2"}


def part_of(node_name):
    return next(part for part, matches in PARTS if matches(node_name))


def profile(bert_dir, train_file, steps=8, warmup=4, batch_size=32, max_seq_length=128, pooling="mean"):
    """(wall ms per step, {part: op ms per step}, {kind: op ms per step}) over `steps` traced steps."""
    import pandas as pd

    from ..shared.tf_compat import tf
    from ..shared.text import TextEncoder, build_tokenizer
    from ..training import pretrained, records
    from ..training.model import model_fn_builder

    base = pretrained.load(bert_dir, max_seq_length)
    do_lower_case = records.resolve_do_lower_case("auto", base.vocab_file, base.init_checkpoint)
    frame = pd.read_csv(train_file).rename(columns={"post": "text", "tags": "label"})
    labels = sorted(set(frame["label"]))
    encoder = TextEncoder(build_tokenizer(base.vocab_file, do_lower_case), max_seq_length, "head")
    record_file = records.cached_records(frame, labels=labels, encoder=encoder, vocab_file=base.vocab_file,
                                         do_lower_case=do_lower_case, cache_dir=tempfile.mkdtemp(prefix="profile-"),
                                         split_name="train")
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        dataset = records.input_fn_builder(record_file, batch_size=batch_size, is_training=True,
                                           max_seq_length=max_seq_length, seed=0)()
        features, label_ids = tf.data.make_one_shot_iterator(dataset).get_next()
        model_fn = model_fn_builder(bert_config=base.config, num_labels=len(labels),
                                    init_checkpoint=base.init_checkpoint,
                                    learning_rate=1e-4, num_train_steps=1000, num_warmup_steps=100, pooling=pooling)
        train_op = model_fn(features, label_ids, tf.estimator.ModeKeys.TRAIN).train_op
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            for _ in range(warmup):
                session.run(train_op)
            started = time.perf_counter()
            for _ in range(steps):
                session.run(train_op)
            wall_ms = 1000.0 * (time.perf_counter() - started) / steps
            parts, kinds = collections.Counter(), collections.Counter()
            options = tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE)
            for _ in range(steps):
                metadata = tf.RunMetadata()
                session.run(train_op, options=options, run_metadata=metadata)
                for device in metadata.step_stats.dev_stats:
                    for node in device.node_stats:
                        ms = (node.op_end_rel_micros - node.op_start_rel_micros) / 1000.0 / steps
                        parts[part_of(node.node_name)] += ms
                        op = node.timeline_label.split("(")[0].split("=")[-1].strip()
                        kinds["matrix products" if op in MATRIX_OPS else "element-wise and the rest"] += ms
    return wall_ms, parts, kinds


def rows(wall_ms, parts, kinds):
    """(measure, value, share) rows for the bench's table."""
    total = sum(parts.values())
    out = [("training step, wall ms (batch 32, length-bucketed)", "%.0f" % wall_ms, "")]
    for name, ms in parts.most_common() + kinds.most_common():
        out.append(("  op time: %s, ms/step" % name, "%.0f" % ms, "%.0f%%" % (100.0 * ms / total)))
    return out


def main(argv=None):
    from ..shared.cli import ArgumentParser, positive_int
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--bert-dir", required=True)
    parser.add_argument("--train-file", required=True, help="CSV with post and tags columns")
    parser.add_argument("--steps", type=positive_int, default=8)
    args = parser.parse_args(argv)
    for name, value, share in rows(*profile(args.bert_dir, args.train_file, args.steps)):
        print("%-60s %8s %5s" % (name, value, share))
    return 0


if __name__ == "__main__":
    sys.exit(main())
