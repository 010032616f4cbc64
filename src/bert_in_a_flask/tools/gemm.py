"""This machine's float32 matrix-multiply speed, the ceiling a model's FLOPs meet: endless n x n
products, "step N" printed after each, for the bench's turn-taking timer (interleave.py), so the
ceiling is measured in the same minutes as the trainers it bounds.

    python -m bert_in_a_flask.tools.gemm numpy|tf|onnxruntime [--size SIZE]

numpy: numpy's BLAS; tf: TensorFlow's MatMul kernel (the one the trainer runs); onnxruntime: its MatMul
kernel (the one the onnx backend serves with), where it is installed. The bench takes the fastest: an old
numpy's BLAS may not know this CPU (numpy 1.18's ran at a third of TF's on an AVX2 EPYC), and on an
AVX-512 Zen 5 onnxruntime 1.32's ran ~10 % faster than TF 2.15's (~500 vs ~450 GFLOP/s on 2 cores).
"""
import argparse
import importlib.util
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


def onnxruntime_product(size):
    """One MatMul with a constant right operand, as the served model's layers are (onnxruntime packs it
    once, at load)."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper
    weight = numpy_helper.from_array(np.random.rand(size, size).astype(np.float32), "b")
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7  # onnxruntime 1.10 (TF 1.15's) reads IR <= 8
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a = np.random.rand(size, size).astype(np.float32)
    return lambda: session.run(None, {"a": a})


PRODUCTS = {"numpy": numpy_product, "tf": tf_product, "onnxruntime": onnxruntime_product}


def available_engines():
    """The engines this environment has: numpy and tf always, onnxruntime (with onnx) where installed."""
    extra = ("onnxruntime",) if all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx")) else ()
    return ("numpy", "tf") + extra


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("engine", choices=sorted(PRODUCTS))
    parser.add_argument("--size", type=int, default=SIZE)
    args = parser.parse_args(argv)
    multiply = PRODUCTS[args.engine](args.size)
    step = 0
    while True:
        multiply()
        step += 1
        print("step %d" % step, flush=True)


if __name__ == "__main__":
    sys.exit(main())
