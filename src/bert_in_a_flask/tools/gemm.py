"""This machine's float32 matrix-multiply speed, the ceiling a model's FLOPs meet: endless n x n
products, "step N" printed after each, for the bench's turn-taking timer (interleave.py), so the
ceiling is measured in the same minutes as the trainers it bounds.

    python -m bert_in_a_flask.tools.gemm numpy|tf [--size SIZE]

numpy: numpy's BLAS; tf: TensorFlow's MatMul kernel (the one the trainer runs). The bench takes the
faster: an old numpy's BLAS may not know this CPU (numpy 1.18's ran at a third of TF's here).
"""
import argparse
import sys

import numpy as np

SIZE = 1024  # the matrices' side: big enough for a BLAS's best speed, a step ~20 ms


def flops_per_step(size=SIZE):
    return 2.0 * size ** 3


def numpy_product(size):
    a, b = np.random.rand(size, size).astype(np.float32), np.random.rand(size, size).astype(np.float32)
    return lambda: a @ b


def tf_product(size):
    from ..shared.tf_compat import tf
    graph = tf.Graph()
    with graph.as_default():  # variables, so that no constant folding skips the product
        a = tf.Variable(np.random.rand(size, size).astype(np.float32))
        b = tf.Variable(np.random.rand(size, size).astype(np.float32))
        product = tf.reduce_sum(tf.matmul(a, b))
        session = tf.Session(graph=graph)
        session.run(tf.global_variables_initializer())
    return lambda: session.run(product)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("engine", choices=("numpy", "tf"))
    parser.add_argument("--size", type=int, default=SIZE)
    args = parser.parse_args(argv)
    multiply = (numpy_product if args.engine == "numpy" else tf_product)(args.size)
    step = 0
    while True:
        multiply()
        step += 1
        print("step %d" % step, flush=True)


if __name__ == "__main__":
    sys.exit(main())
