"""The fusion pass over tf2onnx's output: LayerNorm, GELU and self-attention, spelled as tf2onnx writes
bert's, become one onnxruntime kernel each and give the same numbers; a pattern whose parts are used
elsewhere, or whose constants differ, stays."""
import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from bert_in_a_flask.training.onnx_fusion import fuse  # noqa: E402

HIDDEN, INNER = 8, 16


class Builder(object):
    """A graph written node by node, as tf2onnx writes bert's LayerNorm and GELU."""

    def __init__(self, seed=0):
        self.nodes, self.inits, self.rng, self.n = [], [], np.random.RandomState(seed), 0

    def const(self, value):
        self.n += 1
        name = "c%d" % self.n
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def op(self, op_type, *inputs, name=None, **attrs):
        self.n += 1
        out = "t%d" % self.n
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=name or "n%d" % self.n, **attrs))
        return out

    def ints(self, value):
        self.n += 1
        name = "c%d" % self.n
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.int64), name))
        return name

    def mean(self, x, spelling):
        return (self.op("GlobalAveragePool", x) if spelling == "pool"
                else self.op("ReduceMean", x, axes=[-1], keepdims=1))

    def layer_norm(self, x, spelling="pool"):
        """tf.contrib.layers.layer_norm: moments + batch_normalization, as tf2onnx converts them."""
        mean = self.mean(x, spelling)
        diff = self.op("Sub", x, mean)
        variance = self.mean(self.op("Mul", diff, diff), spelling)
        rsqrt = self.op("Reciprocal", self.op("Sqrt", self.op("Add", variance, self.const(1e-12))))
        scale = self.op("Mul", rsqrt, self.const(self.rng.uniform(0.5, 1.5, HIDDEN)))
        shift = self.op("Sub", self.const(self.rng.normal(size=HIDDEN)), self.op("Mul", mean, scale))
        return self.op("Add", self.op("Mul", x, scale), shift)

    def dense(self, x, n_in, n_out):
        return self.op("Add", self.op("MatMul", x, self.const(self.rng.normal(size=(n_in, n_out)) / n_in ** 0.5)),
                       self.const(self.rng.normal(size=n_out)))

    def gelu(self, x):
        """0.5 * x * (1 + erf(x / sqrt 2)), reordered by TF's grappler as (0.5 * x) * (1 + erf(x * 1/sqrt 2))."""
        cdf = self.op("Add", self.const(1.0), self.op("Erf", self.op("Mul", x, self.const(1 / math.sqrt(2.0)))))
        return self.op("Mul", self.op("Mul", self.const(0.5), x), cdf)

    def model(self, outputs):
        graph = helper.make_graph(
            self.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, HIDDEN])],
            [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 7  # opset 13's; onnxruntime 1.10 (Python 3.7) reads IR versions up to 8
        return model


def run(model, x):
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def encoder_layer(spelling):
    """x -> LayerNorm(x + FFN(LayerNorm(x))) with a bias-add GELU, like one of bert's layers."""
    b = Builder()
    hidden = b.layer_norm("x", spelling)
    inner = b.gelu(b.dense(hidden, HIDDEN, INNER))
    return b, b.layer_norm(b.op("Add", b.dense(inner, INNER, HIDDEN), hidden), spelling)


@pytest.mark.parametrize("spelling", ["pool", "reduce_mean"])
def test_layer_norms_and_gelu_become_single_kernels_with_the_same_numbers(spelling):
    b, out = encoder_layer(spelling)
    model = b.model([out])
    x = np.random.RandomState(1).normal(size=(3, 5, HIDDEN)).astype(np.float32) * 3
    expected = run(model, x)[0]
    assert fuse(model) == {"LayerNormalization": 2, "BiasGelu": 1, "Gelu": 0, "Attention": 0}
    ops = [node.op_type for node in model.graph.node]
    assert sorted(set(ops)) == ["Add", "BiasGelu", "LayerNormalization", "MatMul"], ops
    used = {name for node in model.graph.node for name in node.input}
    assert {init.name for init in model.graph.initializer} <= used  # no constant left behind (a warning per load)
    np.testing.assert_allclose(run(model, x)[0], expected, atol=1e-5)


def test_gelu_without_a_bias_add_becomes_gelu():
    b = Builder()
    out = b.gelu(b.op("Mul", "x", b.const(2.0)))
    model = b.model([out])
    x = np.linspace(-4, 4, 3 * 2 * HIDDEN, dtype=np.float32).reshape(3, 2, HIDDEN)
    expected = run(model, x)[0]
    assert fuse(model) == {"LayerNormalization": 0, "BiasGelu": 0, "Gelu": 1, "Attention": 0}
    np.testing.assert_allclose(run(model, x)[0], expected, atol=1e-6)


def test_a_pattern_whose_parts_are_used_elsewhere_is_left_alone():
    """The LayerNorm's mean is also a graph output: fusing would lose it, so nothing changes."""
    b = Builder()
    out = b.layer_norm("x")
    mean = b.nodes[0].output[0]
    model = b.model([out, mean])
    x = np.random.RandomState(2).normal(size=(2, 4, HIDDEN)).astype(np.float32)
    expected = run(model, x)
    before = [node.op_type for node in model.graph.node]
    assert fuse(model) == {"LayerNormalization": 0, "BiasGelu": 0, "Gelu": 0, "Attention": 0}
    assert [node.op_type for node in model.graph.node] == before
    for got, want in zip(run(model, x), expected):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_a_different_constant_is_not_taken_for_gelu():
    """0.5 * x * (1 + erf(x * 0.8)) is not a GELU."""
    b = Builder()
    cdf = b.op("Add", b.const(1.0), b.op("Erf", b.op("Mul", "x", b.const(0.8))))
    out = b.op("Mul", b.op("Mul", b.const(0.5), "x"), cdf)
    model = b.model([out])
    assert fuse(model) == {"LayerNormalization": 0, "BiasGelu": 0, "Gelu": 0, "Attention": 0}


HEADS, SIZE = 2, 4  # HIDDEN = HEADS * SIZE
SCOPE = "bert/encoder/layer_0/attention/"


def attention_block(context_order="heads_first", mask_value=-10000.0, scale=SIZE ** -0.5,
                    mask_type=TensorProto.INT32, context_is_output=False):
    """x [batch, length, HIDDEN], mask [batch, length] -> bert's attention_layer + the output layer's product,
    with the node names tf2onnx keeps from bert's scopes. context_order "heads_last" is the [batch, length,
    head size, heads] context that tf2onnx writes when it moves a transpose into the output weights;
    context_is_output makes that context a second output of the graph."""
    b = Builder(seed=3)
    flat = b.op("Reshape", "x", b.ints([-1, HIDDEN]))
    heads_shape = b.op("Concat", b.op("Slice", b.op("Shape", "x"), b.ints([0]), b.ints([2])), b.ints([HEADS, SIZE]),
                       axis=0)
    projected = {}
    for role in ("query", "key", "value"):
        product = b.op("MatMul", flat, b.const(b.rng.normal(size=(HIDDEN, HIDDEN)) / HIDDEN ** 0.5),
                       name=SCOPE + "self/%s/MatMul" % role)
        projected[role] = b.op("Add", b.op("Reshape", product, heads_shape), b.const(b.rng.normal(size=(HEADS, SIZE))),
                               name=SCOPE + "self/%s/add" % role)
    q = b.op("Transpose", projected["query"], perm=[0, 2, 1, 3])
    k = b.op("Transpose", projected["key"], perm=[0, 2, 3, 1])
    v = b.op("Transpose", projected["value"], perm=[0, 2, 1, 3])
    scores = b.op("Mul", b.op("MatMul", q, k), b.const(scale), name=SCOPE + "self/Mul")
    mask = b.op("Cast", b.op("Unsqueeze", "mask", b.ints([1, 2])), to=TensorProto.FLOAT)
    adder = b.op("Mul", b.op("Sub", b.const(1.0), mask), b.const(mask_value))
    probs = b.op("Softmax", b.op("Add", scores, adder, name=SCOPE + "self/add"), axis=-1, name=SCOPE + "self/Softmax")
    context = b.op("Transpose", b.op("MatMul", probs, v), perm=[0, 2, 1, 3] if context_order == "heads_first"
                   else [0, 2, 3, 1])
    out = b.op("MatMul", b.op("Reshape", context, b.ints([-1, HIDDEN])),
               b.const(b.rng.normal(size=(HIDDEN, HIDDEN))), name=SCOPE + "output/dense/MatMul")
    graph = helper.make_graph(
        b.nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, HIDDEN]),
                       helper.make_tensor_value_info("mask", mask_type, [None, None])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
         for name in [out] + [context] * context_is_output], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def assert_topologically_sorted(model):
    """ONNX requires each node to come after the producers of its inputs (onnxruntime sorts for itself;
    the checker and other engines do not)."""
    defined = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        early = [name for name in node.input if name and name not in defined]
        assert not early, "%s reads %s before it is made" % (node.name, early)
        defined.update(node.output)


def run_attention(model):
    """The block's outputs on 3 texts of length 6, two of them padded."""
    rng = np.random.RandomState(4)
    mask_type = {TensorProto.INT32: np.int32, TensorProto.INT64: np.int64}[
        model.graph.input[1].type.tensor_type.elem_type]
    mask = np.ones((3, 6), mask_type)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    feeds = {"x": rng.normal(size=(3, 6, HIDDEN)).astype(np.float32), "mask": mask}
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("context_order", ["heads_first", "heads_last"])
def test_self_attention_becomes_one_attention_kernel_with_the_same_numbers(context_order):
    model = attention_block(context_order)
    expected = run_attention(model)
    assert fuse(model)["Attention"] == 1
    ops = [node.op_type for node in model.graph.node]
    # no transpose, softmax or mask arithmetic left: a head-size-major context is absorbed by reordering the
    # output layer's weight rows
    assert sorted(set(ops)) == ["Attention", "Concat", "MatMul", "Reshape", "Shape"], ops
    assert_topologically_sorted(model)
    np.testing.assert_allclose(run_attention(model)[0], expected[0], rtol=1e-5, atol=1e-5)


def test_attention_with_an_int64_mask_and_a_context_read_elsewhere_gives_the_same_numbers():
    """The kernel takes an int32 mask (a Cast is added), and a head-size-major context that is also a graph
    output keeps its layout (a Transpose is added instead of reordering the weights)."""
    model = attention_block("heads_last", mask_type=TensorProto.INT64, context_is_output=True)
    expected = run_attention(model)
    assert fuse(model)["Attention"] == 1
    added = {node.name: node.op_type for node in model.graph.node if node.name.startswith("attention/")
             or "/fused" in node.name}
    assert added[SCOPE + "self/fused"] == "Attention" and added["attention/mask_int32"] == "Cast", added
    assert added[SCOPE + "self/fused/context/heads_last"] == "Transpose", added
    assert_topologically_sorted(model)
    for got, want in zip(run_attention(model), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("change", [{"mask_value": -1e9}, {"scale": 0.25}])
def test_attention_with_other_constants_is_left_alone(change):
    """A mask bias other than bert's -10000, or a scale other than 1/sqrt(head size), is not what the kernel
    computes: nothing changes."""
    model = attention_block(**change)
    expected = run_attention(model)
    before = [node.op_type for node in model.graph.node]
    assert fuse(model)["Attention"] == 0
    assert [node.op_type for node in model.graph.node] == before
    for got, want in zip(run_attention(model), expected):
        np.testing.assert_allclose(got, want, atol=1e-6)
