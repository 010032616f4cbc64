"""Fuse what tf2onnx spells out op by op into the single kernels onnxruntime has for them.

tf2onnx writes each of bert's LayerNorms as the 11 ops of TF's moments + batch_normalization, each
exact GELU as 5 around an Erf, and each self-attention as ~50 (three products, reshapes, transposes,
shape arithmetic, the masked softmax); onnxruntime's own graph fusions match none of these spellings
(its patterns follow PyTorch's exports), so MiniLM-L6 ran 835 small ops per forward pass. This pass
rewrites them in the converted model:

    LayerNorm  mean(x); x - mean; (.)^2; mean; + eps; sqrt; 1/.; * gamma; ... ; x * g + (beta - mean * g)
               -> LayerNormalization(x, gamma, beta, axis=-1, epsilon)   (onnxruntime's kernel for opset < 17)
    GELU       0.5 * x * (1 + erf(x / sqrt 2)) with x = h + bias
               -> BiasGelu(h, bias), or Gelu(x) when x is not a bias add   (com.microsoft, onnxruntime >= 1.10)
    attention  softmax(q k^T / sqrt(d) + (1 - mask) * -10000) v with q, k, v = x W + b, per head
               -> Attention(x, [Wq Wk Wv], [bq bk bv], mask, num_heads)   (com.microsoft, onnxruntime >= 1.10)

A LayerNorm or GELU is fused only where all its intermediate results feed nothing outside it and
gamma, beta, epsilon and the constants are what the spelling says; an attention block only where its
result, in one probe run, equals the attention computed in numpy from its input (fuse_attention);
anything else is left as it was. The result needs onnxruntime (any language binding), which is what
serves it; the conversion's verification against the SavedModel (onnx_verify.py) runs on the fused
file, so a wrong fusion is never served.
"""
import collections
import math


MS_DOMAIN = "com.microsoft"
MEAN_OPS = ("GlobalAveragePool", "ReduceMean")  # tf2onnx writes a last-axis mean of a rank-3 tensor as the first


class Graph(object):
    """Lookups over one onnx GraphProto: producers, consumers, constant values."""

    def __init__(self, graph):
        from onnx import numpy_helper
        self.graph = graph
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        outputs = {output.name for output in graph.output}
        for name in outputs:
            self.consumers.setdefault(name, []).append(None)  # a graph output is a consumer outside any pattern
        self.inputs = {graph_input.name for graph_input in graph.input}
        self.constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)

    def made_by(self, name, op_type):
        node = self.producer.get(name)
        return node if node is not None and node.op_type in ((op_type,) if isinstance(op_type, str) else op_type) \
            else None

    def scalar(self, name):
        value = self.constants.get(name)
        return float(value) if value is not None and value.size == 1 else None

    def vector(self, name):
        value = self.constants.get(name)
        return value if value is not None and value.ndim == 1 else None

    def only_used_by(self, name, nodes):
        """True when every consumer of `name` is one of `nodes`."""
        ids = {id(node) for node in nodes}
        return all(consumer is not None and id(consumer) in ids for consumer in self.consumers.get(name, []))

    def sole_consumer(self, name, op_type):
        consumers = self.consumers.get(name, [])
        return consumers[0] if len(consumers) == 1 and consumers[0] is not None and consumers[0].op_type == op_type \
            else None


def other_input(node, name):
    """The input of a two-input node that is not `name` (None when `name` is not one of them)."""
    if len(node.input) != 2 or name not in node.input:
        return None
    return node.input[1] if node.input[0] == name else node.input[0]


def is_last_axis_mean(g, node):
    if node.op_type == "GlobalAveragePool":
        return True
    axes = [attr.ints for attr in node.attribute if attr.name == "axes"]
    keepdims = [attr.i for attr in node.attribute if attr.name == "keepdims"]
    return len(node.input) == 1 and axes and list(axes[0]) == [-1] and keepdims != [0]


def match_layer_norm(g, add_1):
    """The LayerNorm ending in `add_1` (Add): (x, gamma, beta, epsilon, its nodes), or None."""
    if add_1.op_type != "Add" or len(add_1.input) != 2:
        return None
    for mul_1_out, sub_out in (add_1.input, add_1.input[::-1]):
        mul_1, sub = g.made_by(mul_1_out, "Mul"), g.made_by(sub_out, "Sub")
        if mul_1 is None or sub is None:
            continue
        beta, mul_2 = sub.input[0], g.made_by(sub.input[1], "Mul")
        if g.vector(beta) is None or mul_2 is None:
            continue
        for x, scale_out in (mul_1.input, mul_1.input[::-1]):
            scale = g.made_by(scale_out, "Mul")  # rsqrt(var + eps) * gamma
            if scale is None or scale_out not in mul_2.input:
                continue
            mean_out = other_input(mul_2, scale_out)
            mean = g.made_by(mean_out, MEAN_OPS)
            if mean is None or mean.input[0] != x or not is_last_axis_mean(g, mean):
                continue
            found = match_rsqrt_gamma(g, scale, x, mean_out)
            if found is None:
                continue
            gamma, epsilon, inner = found
            nodes = [add_1, mul_1, sub, mul_2, scale, mean] + inner
            if not all(g.only_used_by(out, nodes) for node in nodes[1:] for out in node.output):
                return None
            if len(g.vector(gamma)) != len(g.vector(beta)):
                return None
            return x, gamma, beta, epsilon, nodes
    return None


def match_rsqrt_gamma(g, scale, x, mean_out):
    """scale = 1/sqrt(mean((x - mean)^2) + eps) * gamma: (gamma, eps, its nodes) or None."""
    for rsqrt_out, gamma in (scale.input, scale.input[::-1]):
        reciprocal = g.made_by(rsqrt_out, "Reciprocal")
        if reciprocal is None or g.vector(gamma) is None:
            continue
        sqrt = g.made_by(reciprocal.input[0], "Sqrt")
        add_eps = sqrt and g.made_by(sqrt.input[0], "Add")
        if add_eps is None:
            continue
        for variance_out, eps in (add_eps.input, add_eps.input[::-1]):
            variance, epsilon = g.made_by(variance_out, MEAN_OPS), g.scalar(eps)
            if variance is None or epsilon is None or not is_last_axis_mean(g, variance):
                continue
            square = g.made_by(variance.input[0], "Mul")
            if square is None or square.input[0] != square.input[1]:
                continue
            diff = g.made_by(square.input[0], "Sub")
            if diff is None or list(diff.input) != [x, mean_out]:
                continue
            return gamma, epsilon, [reciprocal, sqrt, add_eps, variance, square, diff]
    return None


def match_gelu(g, erf):
    """The exact GELU around `erf`: (x, its nodes, output name), or None."""
    if erf.op_type != "Erf":
        return None
    scaled = g.producer.get(erf.input[0])
    if scaled is None or scaled.op_type not in ("Mul", "Div"):
        return None
    wanted = 1 / math.sqrt(2.0) if scaled.op_type == "Mul" else math.sqrt(2.0)
    x = None
    for candidate, constant in (scaled.input, scaled.input[::-1]):
        value = g.scalar(constant)
        if value is not None and abs(value - wanted) < 1e-6 \
                and (scaled.op_type == "Mul" or candidate == scaled.input[0]):
            x = candidate
    add_one = g.sole_consumer(erf.output[0], "Add")
    if x is None or add_one is None or g.scalar(other_input(add_one, erf.output[0])) != 1.0:
        return None
    first = g.sole_consumer(add_one.output[0], "Mul")
    if first is None:
        return None
    partner = other_input(first, add_one.output[0])
    half = g.made_by(partner, "Mul")
    if half is not None and x in half.input and g.scalar(other_input(half, x)) == 0.5:
        nodes, output = [scaled, erf, add_one, half, first], first.output[0]      # (0.5 * x) * (1 + erf)
    elif g.scalar(partner) == 0.5 or partner == x:
        second = g.sole_consumer(first.output[0], "Mul")                           # 0.5 * (1 + erf) * x, ...
        if second is None:
            return None
        rest = other_input(second, first.output[0])
        if not ((partner == x and g.scalar(rest) == 0.5) or (g.scalar(partner) == 0.5 and rest == x)):
            return None
        nodes, output = [scaled, erf, add_one, first, second], second.output[0]
    else:
        return None
    if not all(g.only_used_by(out, nodes) for node in nodes for out in node.output if out != output):
        return None
    return x, nodes, output


def fuse(model):
    """Rewrite `model` (onnx ModelProto) in place; returns the count of each fused op type."""
    from onnx import helper
    counts = {"LayerNormalization": 0, "BiasGelu": 0, "Gelu": 0}
    g = Graph(model.graph)
    replaced = {}  # id(last node of a pattern) -> its fused node; the other nodes of the pattern -> None
    for node in model.graph.node:
        found = match_layer_norm(g, node)
        if found is not None and not any(id(n) in replaced for n in found[4]):
            x, gamma, beta, epsilon, nodes = found
            for n in nodes:
                replaced[id(n)] = None
            replaced[id(node)] = helper.make_node("LayerNormalization", [x, gamma, beta], [node.output[0]],
                                                  name=node.name + "/fused", axis=-1, epsilon=epsilon)
            counts["LayerNormalization"] += 1
    for node in model.graph.node:
        found = match_gelu(g, node)
        if found is None or any(id(n) in replaced for n in found[1]):
            continue
        x, nodes, output = found
        bias_add = g.made_by(x, "Add")
        bias = bias_add is not None and next((b for b in bias_add.input[::-1] if g.vector(b) is not None), None)
        last = next(n for n in nodes if output in n.output)
        if bias and bias_add.input[0] != bias_add.input[1] and g.only_used_by(x, nodes):
            hidden = other_input(bias_add, bias)
            nodes = nodes + [bias_add]
            fused = helper.make_node("BiasGelu", [hidden, bias], [output], name=last.name + "/fused", domain=MS_DOMAIN)
            counts["BiasGelu"] += 1
        else:
            fused = helper.make_node("Gelu", [x], [output], name=last.name + "/fused", domain=MS_DOMAIN)
            counts["Gelu"] += 1
        for n in nodes:
            replaced[id(n)] = None
        replaced[id(last)] = fused
    # Each fused node takes its pattern's last node's place: its inputs come earlier, its users later.
    kept = [replaced.get(id(node), node) for node in model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(node for node in kept if node is not None)
    counts["Attention"] = fuse_attention(model)
    drop_dead_nodes(model.graph)
    drop_unused_constants(model.graph)
    uses_ms_ops = counts["BiasGelu"] or counts["Gelu"] or counts["Attention"]
    if uses_ms_ops and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return counts


def match_attention(g, softmax):
    """bert's self-attention around `softmax` ("<layer>/attention/self/Softmax"), as tf2onnx wrote it: a dict with
    the shared input, the Q/K/V weights and biases, the head count, the mask input and the dense layer that
    reads the context; or None. Matched by bert's scope names and checked by values (shapes, the 1/sqrt(d)
    scale, the -10000 mask): the rest of the chain (reshapes, transposes, batched products) is replaced whole."""
    prefix = softmax.name[:-len("Softmax")]
    if softmax.op_type != "Softmax" or not softmax.name.endswith("/attention/self/Softmax"):
        return None
    by_name = {node.name: node for node in g.graph.node if node.name.startswith(prefix)}
    projections = {}
    for role in ("query", "key", "value"):
        matmul = next((n for name, n in by_name.items() if n.op_type == "MatMul"
                       and name.startswith(prefix + role + "/")
                       and n.input[1] in g.constants and g.constants[n.input[1]].ndim == 2), None)
        bias_add = by_name.get(prefix + role + "/add")
        if matmul is None or bias_add is None or bias_add.op_type != "Add":
            return None
        bias = next((b for b in bias_add.input if b in g.constants), None)
        data = other_input(bias_add, bias) if bias else None
        reshape = g.made_by(data, "Reshape") if data else None
        if data is None or (data != matmul.output[0] and (reshape is None or reshape.input[0] != matmul.output[0])):
            return None
        projections[role] = (matmul.input[0], g.constants[matmul.input[1]], g.constants[bias])
    inputs = {x for x, _, _ in projections.values()}
    weights = [w for _, w, _ in projections.values()]
    biases = [b for _, _, b in projections.values()]
    hidden = weights[0].shape[1]
    if len(inputs) != 1 or any(w.shape != weights[0].shape for w in weights) or any(b.size != hidden for b in biases):
        return None
    mask_add = g.made_by(softmax.input[0], "Add")
    scores = mask_add and next((g.made_by(x, "Mul") for x in mask_add.input if g.made_by(x, "Mul") is not None), None)
    scale = scores and next((g.scalar(x) for x in scores.input if g.scalar(x) is not None), None)
    if not scale or scale <= 0:
        return None
    # [heads, head size] biases name the head count; flat ones leave it to the 1/sqrt(head size) scale
    heads = biases[0].shape[0] if biases[0].ndim == 2 else hidden // max(1, int(round(scale ** -2)))
    if not heads or hidden % heads or abs(scale - (hidden // heads) ** -0.5) > 1e-6:
        return None
    mask = attention_mask_input(g, mask_add, scores)
    dense = dense_after(g, prefix[:-len("self/")] + "output/", softmax)
    if mask is None or dense is None:
        return None
    return {"input": inputs.pop(), "weights": weights, "biases": biases, "heads": heads, "mask": mask, "dense": dense,
            "context": context_tensor(g, dense)}


def attention_mask_input(g, mask_add, scores):
    """The graph input (a [batch, length] 0/1 mask) that bert's additive mask (1 - mask) * -10000, the other
    input of `mask_add` than the scaled `scores`, is made of."""
    seen, stack, found, constants = set(), [other_input(mask_add, scores.output[0])], set(), set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = g.producer.get(name)
        if node is None:
            if name in g.inputs and name not in g.constants:
                found.add(name)
            elif g.scalar(name) is not None:
                constants.add(g.scalar(name))
            continue
        if node.op_type == "Shape":  # shape arithmetic, not the mask's values
            continue
        stack.extend(node.input)
    return found.pop() if len(found) == 1 and -10000.0 in constants else None


def dense_after(g, output_prefix, softmax):
    """The attention output layer's MatMul (its weight a constant) whose input comes from `softmax`."""
    for node in g.graph.node:
        if node.op_type == "MatMul" and node.name.startswith(output_prefix) and node.input[1] in g.constants:
            queue, seen = collections.deque([node.input[0]]), set()
            while queue and len(seen) < 100:  # breadth first: the softmax is a few ops back
                name = queue.popleft()
                producer = g.producer.get(name)
                if producer is softmax:
                    return node
                if producer is not None and name not in seen:
                    seen.add(name)
                    queue.extend(producer.input)
    return None


def fuse_attention(model):
    """Replace each of bert's self-attention blocks by onnxruntime's Attention kernel (one [H, 3H] product for
    Q, K and V, the masked softmax per head, no transposes); returns how many were replaced.

    tf2onnx moves transposes into the weights, so the layout of the context the output layer reads ([batch,
    length, heads, head size], head size before heads, or flat) is written nowhere: one probe run of the
    graph reads each block's input and context, and a block is replaced only where its context equals the
    attention computed here from that input, in one of those layouts."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    try:
        import onnxruntime  # noqa: F401  (the probe; the kernel needs onnxruntime anyway)
    except ImportError:
        return 0
    g = Graph(model.graph)
    found = [m for m in (match_attention(g, node) for node in model.graph.node if node.op_type == "Softmax") if m]
    # one mask and one width in a bert: the kernel's inputs below are made once, for all blocks
    found = [m for m in found
             if m["mask"] == found[0]["mask"] and m["weights"][0].shape == found[0]["weights"][0].shape]
    layouts = probe_context_layouts(model, found) if found else []
    found = [dict(m, layout=layout) for m, layout in zip(found, layouts) if layout is not None]
    if not found:
        return 0
    mask, hidden = found[0]["mask"], found[0]["weights"][0].shape[0]
    mask_int32, shape3 = mask, "attention/input_shape"
    shared = [helper.make_node("Shape", [mask], [shape3 + "/batch_length"], name=shape3 + "/batch_length"),
              helper.make_node("Concat", [shape3 + "/batch_length", shape3 + "/hidden"], [shape3], axis=0, name=shape3)]
    model.graph.initializer.append(numpy_helper.from_array(np.array([hidden], np.int64), shape3 + "/hidden"))
    if next(i.type.tensor_type.elem_type for i in model.graph.input if i.name == mask) != TensorProto.INT32:
        mask_int32 = "attention/mask_int32"
        shared.append(helper.make_node("Cast", [mask], [mask_int32], to=TensorProto.INT32, name=mask_int32))
    added = {}  # id(node) -> the fused nodes that go right before it
    for index, match in enumerate(found):
        name = match["dense"].name.rsplit("/attention/", 1)[0] + "/attention/self/fused"
        heads = match["heads"]
        weight = np.concatenate(match["weights"], axis=1).astype(np.float32)
        bias = np.concatenate([b.ravel() for b in match["biases"]]).astype(np.float32)
        size = weight.shape[1] // 3 // heads  # the head size
        context_shape, transpose = context_plan(g, model, match, heads, size)
        model.graph.initializer.extend([
            numpy_helper.from_array(weight, name + "/qkv_weight"), numpy_helper.from_array(bias, name + "/qkv_bias"),
            numpy_helper.from_array(np.array(context_shape, np.int64), name + "/context_shape")])
        context = name + "/context"
        nodes = [
            helper.make_node("Reshape", [match["input"], shape3], [name + "/input"], name=name + "/input"),
            helper.make_node("Attention", [name + "/input", name + "/qkv_weight", name + "/qkv_bias", mask_int32],
                             [name + "/output"], name=name, domain=MS_DOMAIN, num_heads=heads),
            helper.make_node("Reshape", [name + "/output", name + "/context_shape"], [context], name=context)]
        if transpose:  # the kernel's heads-first values, laid out [batch, length, head size, heads]
            nodes.append(helper.make_node("Transpose", [context], [context + "/heads_last"], perm=[0, 1, 3, 2],
                                          name=context + "/heads_last"))
            context += "/heads_last"
        # The new context takes the old one's place, in its shape: tf2onnx's shape arithmetic downstream
        # reads it too, and would otherwise keep the whole old chain alive.
        nodes += transposed_shapes(g, match["context"], context)
        for consumer in g.consumers.get(match["context"], []):
            if consumer is not None:
                consumer.input[:] = [context if x == match["context"] else x for x in consumer.input]
        # ONNX wants each node after its inputs' producers: the new ones go right before their first reader
        # (tf2onnx's shape arithmetic for the output layer can come before the layer itself)
        made = {output for node in nodes for output in node.output}
        first_reader = next(node for node in model.graph.node if made.intersection(node.input))
        added[id(first_reader)] = (shared if index == 0 else []) + nodes
    kept = []
    for node in model.graph.node:
        kept.extend(added.get(id(node), []))
        kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return len(found)


def probe_context_layouts(model, found, batch=2, length=7):
    """For each matched block: "heads_first", "heads_last" or "flat" (how its context is laid out), or None
    where the context is not the attention of its input (that block is then left as it was)."""
    import numpy as np
    import onnxruntime
    from onnx import TensorProto, helper
    probe = type(model)()
    probe.CopyFrom(model)
    wanted = [m["context"] for m in found] + [m["input"] for m in found]
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in wanted)
    mask = np.ones((batch, length))
    mask[1, length // 2:] = 0  # a padded row: the mask must act as bert's
    types = {TensorProto.INT32: np.int32, TensorProto.INT64: np.int64, TensorProto.FLOAT: np.float32}
    rng = np.random.RandomState(0)
    feeds = {}
    weights = {init.name for init in model.graph.initializer}  # listed as inputs in old IR versions
    for graph_input in (i for i in model.graph.input if i.name not in weights):  # ids 0 ([PAD]), floats at random
        elem_type = graph_input.type.tensor_type.elem_type
        shape = [dim.dim_value or (batch if axis == 0 else length)
                 for axis, dim in enumerate(graph_input.type.tensor_type.shape.dim)]
        value = mask if graph_input.name == found[0]["mask"] else (
            rng.normal(size=shape) if elem_type == TensorProto.FLOAT else np.zeros(shape))
        feeds[graph_input.name] = value.astype(types[elem_type])
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = session.run(wanted, feeds)
    layouts = []
    for match, context, x in zip(found, values[:len(found)], values[len(found):]):
        expected = reference_attention(x.reshape(batch, length, -1), match, mask)  # [batch, length, heads, size]
        candidates = {"heads_first": expected, "heads_last": expected.transpose(0, 1, 3, 2),
                      "flat": expected.reshape(batch * length, -1)}
        layouts.append(next((layout for layout, value in candidates.items() if value.shape == context.shape
                             and np.allclose(value, context, rtol=1e-3, atol=1e-4)), None))
    return layouts


def reference_attention(x, match, mask):
    """bert's attention_layer in numpy: [batch, length, heads, head size]."""
    import numpy as np
    batch, length, _ = x.shape
    q, k, v = [(x @ w + b.ravel()).reshape(batch, length, match["heads"], -1).transpose(0, 2, 1, 3)
               for w, b in zip(match["weights"], match["biases"])]
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1]) + (1.0 - mask[:, None, None, :]) * -10000.0
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    return (probs @ v).transpose(0, 2, 1, 3)


def context_plan(g, model, match, heads, size):
    """How the kernel's [batch, length, hidden] result (heads first) replaces the block's context: the shape
    it is reshaped to, and whether a Transpose must then put head size before heads."""
    if match["layout"] == "flat":
        return [-1, heads * size], False
    if match["layout"] == "heads_first":
        return [0, 0, heads, size], False
    if reorder_output_weights(g, model, match, heads, size):
        # the output layer now reads heads first; the old [.., head size, heads] shape stays for the shape
        # arithmetic downstream (the values' order under it is the kernel's)
        return [0, 0, size, heads], False
    return [0, 0, heads, size], True


def reorder_output_weights(g, model, match, heads, size):
    """Where the output layer reads a head-size-major context only through its flattening Reshape, permute
    that layer's weight rows to the head-major order the Attention kernel writes: no transpose is needed
    (transposing the last two axes cost ~9 % of the forward pass). The new context is then given the old
    one's shape, for the shape arithmetic that reads it. False where the context has other readers."""
    import numpy as np
    from onnx import numpy_helper
    readers = [n for n in g.consumers.get(match["context"], []) if n is None or n.op_type != "Shape"]
    flatten, dense = (readers[0] if len(readers) == 1 else None), match["dense"]
    if flatten is None or flatten.op_type != "Reshape" or g.consumers.get(flatten.output[0], []) != [dense] \
            or dense.input[0] != flatten.output[0]:
        return False
    weight = g.constants[dense.input[1]]
    rows = np.arange(heads * size).reshape(size, heads).T.ravel()  # head-major row i reads weight row rows[i]
    name = dense.input[1] + "/heads_first"
    model.graph.initializer.append(numpy_helper.from_array(weight[rows].astype(weight.dtype), name))
    dense.input[1] = name
    return True


def context_tensor(g, dense):
    """The attention's result as the output layer reads it: the 4-d transpose that tf2onnx's einsum spelling
    flattens for the product, or the product's flat input itself."""
    flatten = g.made_by(dense.input[0], "Reshape")
    transpose = g.made_by(flatten.input[0], "Transpose") if flatten is not None else None
    if transpose is not None and len(transpose.attribute[0].ints) == 4:
        return transpose.output[0]
    return dense.input[0]


def transposed_shapes(g, context, replacement):
    """tf2onnx computes the shape of Transpose(x, perm) as Gather(Shape(x), perm); where `context` is such a
    transpose, those Gathers are pointed at Shape(replacement) (the same values) so x's chain can go.
    Returns the Shape node to add (none when there is nothing to repoint)."""
    from onnx import helper
    transpose = g.made_by(context, "Transpose")
    if transpose is None:
        return []
    perm = list(transpose.attribute[0].ints)
    shapes = [node for node in g.consumers.get(transpose.input[0], []) if node is not None and node.op_type == "Shape"]
    gathers = [gather for shape in shapes
               for gather in g.consumers.get(shape.output[0], []) if gather is not None and gather.op_type == "Gather"
               and gather.input[1] in g.constants and list(g.constants[gather.input[1]].ravel()) == perm]
    if not gathers:
        return []
    shape_node = helper.make_node("Shape", [replacement], [replacement + "/shape"], name=replacement + "/shape")
    for gather in gathers:
        for consumer in g.consumers.get(gather.output[0], []):
            if consumer is not None:
                consumer.input[:] = [replacement + "/shape" if x == gather.output[0] else x for x in consumer.input]
    return [shape_node]


def drop_dead_nodes(graph):
    """Remove the nodes whose results nothing reads (what a fused block leaves behind: its shape arithmetic)."""
    while True:
        used = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
        dead = [node for node in graph.node if not any(out in used for out in node.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def drop_unused_constants(graph):
    """Remove the initializers and Constant nodes that only the fused patterns read (epsilon, 0.5, 1,
    1/sqrt 2): onnxruntime would warn about each one whenever it loads the file."""
    used = ({name for node in graph.node for name in node.input} | {output.name for output in graph.output}
            | {graph_input.name for graph_input in graph.input})  # an initializer listed as an input stays
    constants = [node for node in graph.node if node.op_type == "Constant" and node.output[0] not in used]
    for node in constants:
        graph.node.remove(node)
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)


def fuse_file(path):
    """Fuse the model at `path` in place; returns the counts."""
    import onnx
    model = onnx.load(path)
    counts = fuse(model)
    if any(counts.values()):
        onnx.save(model, path)
    return counts
