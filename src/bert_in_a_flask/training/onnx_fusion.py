"""Fuse what tf2onnx spells out op by op into the single kernels onnxruntime has for them.

tf2onnx writes each of bert's LayerNorms as the 11 ops of TF's moments + batch_normalization, and
each exact GELU as 5 around an Erf; onnxruntime's own graph fusions match neither spelling (its
patterns follow PyTorch's exports), so MiniLM-L6 ran 835 small ops per forward pass. This pass
rewrites them in the converted model:

    LayerNorm  mean(x); x - mean; (.)^2; mean; + eps; sqrt; 1/.; * gamma; ... ; x * g + (beta - mean * g)
               -> LayerNormalization(x, gamma, beta, axis=-1, epsilon)   (onnxruntime's kernel for opset < 17)
    GELU       0.5 * x * (1 + erf(x / sqrt 2)) with x = h + bias
               -> BiasGelu(h, bias), or Gelu(x) when x is not a bias add   (com.microsoft, onnxruntime >= 1.10)

A pattern is fused only where all its intermediate results feed nothing outside it and gamma, beta,
epsilon and the constants are what the spelling says; anything else is left as it was. The result
needs onnxruntime (any language binding), which is what serves it; the conversion's verification
against the SavedModel (onnx_export.py) runs on the fused file, so a wrong fusion is never served.
"""
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
        if value is not None and abs(value - wanted) < 1e-6 and (scaled.op_type == "Mul" or candidate == scaled.input[0]):
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
    """Rewrite `model` (onnx ModelProto) in place; returns {"LayerNormalization": n, "BiasGelu": n, "Gelu": n}."""
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
    drop_unused_constants(model.graph)
    if (counts["BiasGelu"] or counts["Gelu"]) and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return counts


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
