"""A decoder's Keras graph as a chain of float64 steps: the form export/bounds.py runs it in and bounds it on.

    chain = layer_chain(decoder)     # Chain: the layers after the input, in topological order
    for step in chain: ...           # _Linear, _Move, _Affine, _Merge or _Act, each reading and writing tensor ids

:func:`graph_nodes` walks a single-input Keras model (functional or sequential) back from its outputs;
:func:`layer_chain` turns each layer into one step: a linear layer (Dense, the convolutions) as float64
callables with its kernel, bias, fan-in and activation; data movement applied to values and bounds alike; an
inference-mode BatchNormalization as its per-channel affine map (:func:`batch_norm_affine`); Add and
Concatenate; a hidden activation (:func:`hidden_activation`) as a layer of its own; and the output activation
split off. A layer it does not understand raises, so no layer escapes the bounds. export/byom.py reads the same
graph to check and rebuild a decoder brought by the user.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from runtime.manifest import NONE, SIGMOID, TANH


def _relu(a):
    return np.maximum(a, 0.0)


def _relu6(a):
    return np.minimum(np.maximum(a, 0.0), 6.0)


def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _identity(a):
    return a


def _leaky(alpha: float):
    return lambda a: np.where(a > 0, a, alpha * a)


@dataclass(frozen=True)
class _Activation:
    """A monotone non-decreasing activation: ``f`` and where its slope is 1 (``alpha`` elsewhere, 0 for ReLU)."""

    name: str
    f: object
    alpha: float = 0.0  # the slope of leaky_relu below 0
    upper: float | None = None  # relu6: the slope is 0 above 6 too

    def slope_mask(self, a: np.ndarray):
        """Where the slope is 1 (elsewhere it is ``alpha``)."""
        if self.upper is None:
            return a > 0
        return (a > 0) & (a < self.upper)


def hidden_activation(name: str, alpha: float = 0.0) -> _Activation | None:
    """The activation ``name`` as a hidden layer applies it (None: linear); ValueError for any other."""
    if name == "linear":
        return None
    if name == "relu":
        return _Activation("relu", _relu)
    if name == "relu6":
        return _Activation("relu6", _relu6, upper=6.0)
    if name == "leaky_relu":
        return _Activation("leaky_relu", _leaky(alpha), alpha=alpha)
    raise ValueError(f"activation {name!r} has no error bound here")


@dataclass(frozen=True)
class _Linear:
    """One layer as float64 callables: ``apply(kernel, x)`` is the layer's linear map without bias."""

    name: str
    kernel: np.ndarray
    bias: np.ndarray
    fan_in: int
    activation: str
    apply: object  # (kernel, x) -> y
    inputs: tuple = ()  # tensor ids (see layer_chain)
    output: int = 0
    slots: tuple = ()  # indexes of its quantized inputs in Forward.inputs
    act: _Activation | None = None


@dataclass(frozen=True)
class _Move:
    """A layer that only moves values (Reshape, ZeroPadding2D, DepthToSpace, nearest upsampling): applied to
    values and bounds alike. ``apply`` None: the output activation, which the caller applies."""

    name: str
    apply: object  # x -> y
    inputs: tuple = ()
    output: int = 0


@dataclass(frozen=True)
class _Affine:
    """An inference-mode BatchNormalization of the Keras reference, y = x·scale + shift per channel (the artifact
    graphs have it folded into the layer before it)."""

    name: str
    scale: np.ndarray
    shift: np.ndarray
    magnitude: np.ndarray  # |β| + |μ·scale|: the terms its float32 computation rounds besides |x·scale|
    inputs: tuple = ()
    output: int = 0
    slots: tuple = ()  # its input is recorded (the reference's bound needs it), never quantized


@dataclass(frozen=True)
class _Merge:
    """Add (sum of its inputs) or Concatenate (along ``axis``). Every input is a quantized tensor in int8."""

    name: str
    kind: str  # "add" | "concat"
    axis: int
    inputs: tuple = ()
    output: int = 0
    slots: tuple = ()


@dataclass(frozen=True)
class _Act:
    """A hidden activation as a layer of its own (ReLU, LeakyReLU, Activation)."""

    name: str
    act: _Activation
    inputs: tuple = ()
    output: int = 0
    slots: tuple = ()


@dataclass(frozen=True)
class Chain:
    """A decoder's layers after its input in topological order, each reading and writing tensor ids.

    ``activation``: the output activation (sigmoid, tanh, none); ``slots``: how many inputs the layers record,
    one :class:`Forward` input each: the quantized ones (the int8 tensors a quantized artifact rounds: inputs
    of linear, Add, Concatenate and activation layers) and BatchNormalization's (never quantized: the artifact
    graphs fold it).
    """

    steps: tuple
    input: int
    output: int
    activation: str
    slots: int

    def __iter__(self):
        return iter(self.steps)

    def __len__(self):
        return len(self.steps)


def _float64_clone(layer, **overrides):
    return type(layer).from_config({**layer.get_config(), "dtype": "float64", **overrides})


def graph_nodes(model) -> tuple[int, list[tuple], tuple[int, ...]]:
    """(input tensor id, [(layer, input tensor ids, output tensor id, input shapes)] in topological order,
    output tensor ids) of a single-input Keras model (functional or sequential), read from its graph.

    Keras keeps each tensor's producer (``_keras_history``); a layer of a sequential model may have several
    inbound nodes, so the graph is walked back from the outputs through the nodes the tensors name.
    """
    if len(model.inputs) != 1:
        raise ValueError(f"the model must have one input, has {len(model.inputs)}")
    source = id(model.inputs[0])
    order, seen = [], set()

    def visit(tensor):
        key = id(tensor)
        if key in seen or key == source:
            return
        seen.add(key)
        layer, node_index, _ = tensor._keras_history
        node = layer._inbound_nodes[node_index]
        if len(node.output_tensors) != 1:
            raise ValueError(
                f"{layer.name}: a layer with {len(node.output_tensors)} outputs is not supported"
            )
        ins = list(node.input_tensors)
        if not ins:  # an InputLayer that is not the model's input
            raise ValueError(f"{layer.name}: the model must have a single input")
        for t in ins:
            visit(t)
        order.append((layer, tuple(id(t) for t in ins), key, tuple(tuple(t.shape) for t in ins)))

    for out in model.outputs:
        visit(out)
    return source, order, tuple(id(t) for t in model.outputs)


def batch_norm_affine(layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An inference-mode BatchNormalization as float64 (scale, shift, |β| + |μ·scale|): y = x·scale + shift."""
    w = {v.path.split("/")[-1]: np.asarray(v.numpy(), np.float64) for v in layer.weights}
    mean, variance = w["moving_mean"], w["moving_variance"]
    gamma, beta = w.get("gamma", np.ones_like(mean)), w.get("beta", np.zeros_like(mean))
    scale = gamma / np.sqrt(variance + layer.get_config()["epsilon"])
    return scale, beta - mean * scale, np.abs(beta) + np.abs(mean * scale)


def _linear(layer, inputs, output, shapes, activation: str | None = None) -> _Linear:
    """A Dense or convolution layer; ``activation`` overrides its own (linear: the output activation is split off)."""
    kind = type(layer).__name__
    weights = [np.asarray(w, np.float64) for w in layer.get_weights()]
    kernel = weights[0]
    clone = _float64_clone(layer, activation="linear", use_bias=False)
    clone.build(shapes[0])
    if kind == "Dense":
        fan_in, channels = kernel.shape[0], kernel.shape[1]
    elif kind == "Conv2D":  # (kh, kw, in, out)
        fan_in, channels = kernel.shape[0] * kernel.shape[1] * kernel.shape[2], kernel.shape[3]
    elif kind == "DepthwiseConv2D":  # (kh, kw, in, multiplier): each output reads one input channel
        fan_in, channels = kernel.shape[0] * kernel.shape[1], kernel.shape[2] * kernel.shape[3]
    else:  # Conv2DTranspose (kh, kw, out, in)
        fan_in, channels = kernel.shape[0] * kernel.shape[1] * kernel.shape[3], kernel.shape[2]
    bias = weights[1] if len(weights) > 1 else np.zeros(channels, np.float64)
    activation = activation or layer.get_config()["activation"]
    act = hidden_activation(activation, 0.2)  # Keras's leaky_relu activation string has slope 0.2

    def apply(k, x, clone=clone):
        clone.kernel.assign(k)
        return np.asarray(clone(x), np.float64)

    return _Linear(layer.name, kernel, bias, fan_in, activation, apply, inputs, output, (), act)


def _nearest_upsampling(rows: int, cols: int):
    return lambda x: np.repeat(np.repeat(x, rows, axis=1), cols, axis=2)


def _step(layer, inputs, output, shapes):
    """The layer as one step of a :class:`Chain`, or None for the output activation (handled by the caller)."""
    kind = type(layer).__name__
    config = layer.get_config()
    if kind in ("Dense", "Conv2D", "Conv2DTranspose", "DepthwiseConv2D"):
        return _linear(layer, inputs, output, shapes)
    if kind in ("Reshape", "ZeroPadding2D", "DepthToSpace", "Flatten", "Cropping2D"):
        clone = _float64_clone(layer)
        return _Move(layer.name, lambda x, clone=clone: np.asarray(clone(x), np.float64), inputs, output)
    if kind == "UpSampling2D" and config.get("interpolation", "nearest") == "nearest":
        rows, cols = config["size"]
        return _Move(layer.name, _nearest_upsampling(rows, cols), inputs, output)
    if kind == "NearestUpsampling":  # export/byom.py's stand-in for UpSampling2D
        return _Move(layer.name, _nearest_upsampling(*config["size"]), inputs, output)
    if kind == "Resizing" and config["interpolation"] == "nearest":
        (_, h, w, _c) = shapes[0]
        rows, cols = config["height"] // h, config["width"] // w
        if (rows * h, cols * w) != (config["height"], config["width"]):
            raise ValueError(f"{layer.name}: resizing by a non-integer factor has no error bound here")
        return _Move(layer.name, _nearest_upsampling(rows, cols), inputs, output)
    if kind == "BatchNormalization":
        if config["axis"] not in (-1, len(shapes[0]) - 1):
            raise ValueError(
                f"{layer.name}: BatchNormalization over axis {config['axis']} has no error bound here"
            )
        return _Affine(layer.name, *batch_norm_affine(layer), inputs, output)
    if kind in ("Add", "Concatenate"):
        merge = "add" if kind == "Add" else "concat"
        return _Merge(layer.name, merge, config.get("axis", -1), inputs, output)
    if kind == "Activation" and config["activation"] in (SIGMOID, TANH):
        return None
    if kind == "Activation":
        act = hidden_activation(config["activation"], 0.2)
        return (
            _Move(layer.name, _identity, inputs, output)
            if act is None
            else _Act(layer.name, act, inputs, output)
        )
    if kind == "LeakyReLU":
        return _Act(
            layer.name, hidden_activation("leaky_relu", float(config["negative_slope"])), inputs, output
        )
    if kind == "ReLU":
        if (
            config.get("threshold", 0.0)
            or config.get("negative_slope", 0.0)
            or config.get("max_value") not in (None, 6.0)
        ):
            raise ValueError(
                f"{layer.name}: a ReLU with a threshold, slope or max other than 6 has no error bound here"
            )
        return _Act(
            layer.name, hidden_activation("relu6" if config.get("max_value") else "relu"), inputs, output
        )
    raise ValueError(f"{layer.name}: a {kind} layer has no error bound here")


def layer_chain(model) -> Chain:
    """The model's layers after its input, each as a step running in float64, in topological order.

    Understood: Dense, Conv2D, Conv2DTranspose, DepthwiseConv2D (with a linear, relu, relu6 or leaky_relu
    activation), BatchNormalization, Add, Concatenate, ReLU / LeakyReLU / Activation layers, data-movement
    layers (Reshape, Flatten, ZeroPadding2D, Cropping2D, DepthToSpace, nearest UpSampling2D and Resizing,
    export/byom.py's NearestUpsampling) and
    one output activation (sigmoid or tanh, as a layer or as the last linear layer's activation, followed by
    data movement only; without one the output activation is "none"). Anything else raises, so a new layer
    cannot silently escape the bound.
    """
    source, nodes, outs = graph_nodes(model)
    if len(outs) != 1:
        raise ValueError(f"the model must have one output, has {len(outs)}")
    out = outs[0]
    steps, activation, slots, head_at = [], NONE, 0, None
    for layer, inputs, output, shapes in nodes:
        config = layer.get_config()
        final = config.get("activation") if type(layer).__name__ != "Activation" else None
        if final in (SIGMOID, TANH):  # the last linear layer carries the output activation
            steps.append(_linear(layer, inputs, -output, shapes, activation="linear"))
            steps.append(_Move(layer.name, None, (-output,), output))
        else:
            step = _step(layer, inputs, output, shapes)
            if step is None:
                final = config["activation"]
                step = _Move(layer.name, None, inputs, output)
            steps.append(step)
        if final in (SIGMOID, TANH):
            if head_at is not None:
                raise ValueError(
                    f"{layer.name}: a second {final}; sigmoid and tanh only as the output activation"
                )
            head_at, activation = len(steps) - 1, final
    if head_at is not None and not all(isinstance(s, _Move) for s in steps[head_at + 1 :]):
        raise ValueError(
            f"{steps[head_at].name}: {activation} only as the output activation, not before other layers"
        )
    numbered = []
    for step in steps:
        if isinstance(step, _Linear | _Merge | _Act | _Affine):
            n = len(step.inputs)
            step = replace(step, slots=tuple(range(slots, slots + n)))
            slots += n
        numbered.append(step)
    return Chain(tuple(numbered), source, out, activation, slots)
