"""The graph as the lowered form (:mod:`firmware_sim.codegen.plan`): :func:`lower` maps FULLY_CONNECTED (+
RESHAPE), PAD, CONV_2D, TRANSPOSE_CONV and DEPTH_TO_SPACE onto one DenseLayer and a chain of phase
convolutions, after :func:`~firmware_sim.codegen.checks.check_graph`; :func:`run_plan` evaluates that form in
numpy, so the lowering is checked against :mod:`firmware_sim.reference` without a compiler."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from runtime.latent import METADATA_NAME as LATENT_SPLIT_METADATA  # written by export/latent_split.py

from ..fixedpoint import multiply_by_quantized_multiplier
from ..graph import Graph, UnsupportedOpError, operands
from ..reference import (
    IntegerReference,
    activation_range,
    fully_connected_multiplier,
    per_channel_multipliers,
    same_padding,
)
from .checks import check_graph, check_int8, check_plan
from .plan import ELEMENTWISE_OPS, SUPPORTED_OPS, ConvLayer, DecoderPlan, DenseLayer, Phase


@dataclass
class _View:
    """How a graph tensor maps onto a lowered layer's logical output image: physical pixel (y, x), channel
    (qy·b + qx)·C + i is logical pixel (b·(y − pad_t) + qy, b·(x − pad_l) + qx), channel i."""

    layer: int
    block: int
    pad_t: int
    pad_l: int


def lower(
    graph: Graph, *, name: str, graph_kind: str, source: str = "", source_sha256: str = ""
) -> DecoderPlan:
    """The graph as one DenseLayer and a chain of ConvLayers (raises UnsupportedOpError naming what is not)."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UnsupportedOpError("the C generator needs a decoder with one input and one output")
    tin, tout = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
    check_int8(tin, f"the model input {tin.name!r}")
    check_int8(tout, f"the model output {tout.name!r}")
    unsupported = sorted({op.kind for op in graph.ops} - set(SUPPORTED_OPS))
    if unsupported:
        raise UnsupportedOpError(
            f"the C generator does not implement {', '.join(unsupported)} (supported: {', '.join(SUPPORTED_OPS)}); "
            "generate from the int8-I/O decoders python -m export writes"
        )
    if len(tin.shape) != 2 or tin.shape[0] != 1:
        raise UnsupportedOpError(
            f"the model input has shape {tin.shape}; the generator needs a batch-1 (1, D) latent"
        )
    if len(tout.shape) != 4 or tout.shape[0] != 1:
        raise UnsupportedOpError(
            f"the model output has shape {tout.shape}; the generator needs a batch-1 image (1, H, W, C)"
        )
    check_graph(graph)
    consumers: dict[int, list] = {}
    for op in graph.ops:
        for i in op.inputs:
            if i >= 0 and not graph.tensors[i].is_constant:
                consumers.setdefault(i, []).append(op)

    def only_consumer(tensor: int):
        ops = consumers.get(tensor, [])
        if len(ops) > 1:
            raise UnsupportedOpError(
                f"tensor {graph.tensors[tensor].name!r} feeds {len(ops)} ops; the generator streams a chain"
            )
        return ops[0] if ops else None

    dense: DenseLayer | None = None
    dense_rows = None
    convs: list[ConvLayer] = []
    views: dict[int, _View] = {}
    layer_shapes: list[tuple[int, int, int]] = []
    for op in graph.ops:
        t = graph.tensors
        if op.kind == "FULLY_CONNECTED":
            if dense is not None or op.inputs[0] != graph.inputs[0]:
                raise UnsupportedOpError(
                    "the generator needs exactly one FULLY_CONNECTED, on the latent input"
                )
            inp, filt, out = t[op.inputs[0]], t[op.inputs[1]], t[op.outputs[0]]
            check_int8(out, "the FULLY_CONNECTED output")
            if len(filt.scale) > 1 or int(filt.zero_point[0]) != 0:
                raise UnsupportedOpError(
                    "per-channel or asymmetric FULLY_CONNECTED weights are not supported"
                )
            mult, shift = fully_connected_multiplier(inp, filt, out)
            lo, hi = activation_range(out, op.options.get("activation"))
            bias = t[op.inputs[2]].data if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            n = filt.shape[0]
            dense_rows = dict(
                weights=np.asarray(filt.data, np.int8).reshape(n, -1),
                bias=np.zeros(n, np.int64) if bias is None else bias.astype(np.int64),
                in_zp=int(inp.zero_point[0]),
                mult=mult,
                shift=shift,
                out_zp=int(out.zero_point[0]),
                lo=lo,
                hi=hi,
            )
            dense = DenseLayer(**dense_rows, out_shape=(1, 1, n))
            layer_shapes.append((1, 1, n))
            views[op.outputs[0]] = _View(0, 1, 0, 0)
        elif op.kind == "RESHAPE":
            v = views.get(op.inputs[0])
            if v is None or v.layer != 0 or len(convs):
                raise UnsupportedOpError("RESHAPE is supported only on the FULLY_CONNECTED output")
            shape = t[op.outputs[0]].shape
            if len(shape) != 4 or shape[0] != 1:
                raise UnsupportedOpError(f"RESHAPE to {shape}: the generator needs (1, H, W, C)")
            dense = DenseLayer(**dense_rows, out_shape=tuple(int(s) for s in shape[1:]))
            layer_shapes[0] = dense.out_shape
            views[op.outputs[0]] = _View(0, 1, 0, 0)
        elif op.kind in ELEMENTWISE_OPS:
            v = views.get(op.inputs[0])
            if v is None or v.layer != len(convs) or v.pad_t or v.pad_l:
                raise UnsupportedOpError(f"{op.kind} is supported only on the output of the layer before it")
            only_consumer(op.inputs[0])
            if v.layer == 0:
                dense_rows["lut"] = compose_tables(dense_rows.get("lut"), elementwise_table(graph, op))
                dense = replace(dense, lut=dense_rows["lut"])
            else:
                convs[-1] = replace(
                    convs[-1], lut=compose_tables(convs[-1].lut, elementwise_table(graph, op))
                )
            views[op.outputs[0]] = v
        elif op.kind == "PAD":
            v = views.get(op.inputs[0])
            pads = np.asarray(t[op.inputs[1]].data).reshape(-1, 2)
            if v is None or pads.shape[0] != 4 or pads[0].any() or pads[3].any():
                raise UnsupportedOpError("PAD is supported only on the rows and columns of an activation")
            views[op.outputs[0]] = _View(
                v.layer, v.block, v.pad_t + int(pads[1, 0]), v.pad_l + int(pads[2, 0])
            )
        elif op.kind == "DEPTH_TO_SPACE":
            v = views.get(op.inputs[0])
            if v is None or v.block != int(op.options["blockSize"]) or v.pad_t or v.pad_l:
                raise UnsupportedOpError("DEPTH_TO_SPACE is supported only right after a CONV_2D")
            views[op.outputs[0]] = _View(v.layer, 1, 0, 0)
        else:  # CONV_2D or TRANSPOSE_CONV
            nxt = only_consumer(op.outputs[0])
            while nxt is not None and nxt.kind in ELEMENTWISE_OPS:  # an activation keeps the layout
                nxt = only_consumer(nxt.outputs[0])
            bo = int(nxt.options["blockSize"]) if nxt is not None and nxt.kind == "DEPTH_TO_SPACE" else 1
            if bo == 1 and _feeds_subpixel_conv(graph, op, nxt, only_consumer):
                # Sub-pixel chain: this output's channels are the 2x2 phases of the image the next convolution
                # reads. Stored as that image, the next layer's taps are the real ones (no zero blocks) and its
                # rows stream at the image's resolution.
                bo = 2
            layer = _lower_conv(graph, op, views, layer_shapes, bo)
            convs.append(layer)
            layer_shapes.append(layer.out_shape)
            views[op.outputs[0]] = _View(len(convs), bo, 0, 0)
    if dense is None or not convs:
        raise UnsupportedOpError("the generator needs a FULLY_CONNECTED followed by convolutions")
    v = views.get(graph.outputs[0])
    if v is None or v.layer != len(convs) or v.block != 1 or convs[-1].out_shape != tuple(tout.shape[1:]):
        raise UnsupportedOpError("the model output is not the last convolution's image")
    if convs[0].in_shape != dense.out_shape:
        raise UnsupportedOpError("the first convolution does not read the FULLY_CONNECTED output image")
    last = next((op for op in graph.ops if op.outputs[0] == graph.outputs[0]), None)  # writes the output
    plan = DecoderPlan(
        name=name,
        graph_kind=graph_kind,
        source=source,
        source_sha256=source_sha256,
        input_size=int(tin.shape[1]),
        latent_scale=float(tin.scale[0]),
        latent_zp=int(tin.zero_point[0]),
        logits_scale=float(tout.scale[0]),
        logits_zp=int(tout.zero_point[0]),
        dense=dense,
        convs=tuple(convs),
        latent_split=latent_split_of(graph, int(tin.shape[1])),
        output_op=last.kind if last is not None and last.kind in ELEMENTWISE_OPS else "",
    )
    check_plan(plan)
    return plan


def elementwise_table(graph: Graph, op) -> np.ndarray:
    """A standalone int8 activation as the table of its 256 outputs (input q at q + 128), computed by
    :mod:`firmware_sim.reference` with TFLite Micro's arithmetic for the op's own quantization."""
    tin, tout = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
    check_int8(tin, f"the {op.kind} input")
    check_int8(tout, f"the {op.kind} output")
    if op.kind == "RELU6" and (float(tin.scale[0]), int(tin.zero_point[0])) != (
        float(tout.scale[0]),
        int(tout.zero_point[0]),
    ):
        # TFLM's int8 RELU6 clamps the input codes and never reads the output's quantization: its outputs (and
        # a C bit-exact with them) would mean other values than the graph says. TFLite requantizes.
        raise UnsupportedOpError(
            f"op {op.index} RELU6 has an output quantized unlike its input ({float(tout.scale[0]):.6g}, "
            f"{int(tout.zero_point[0])} vs {float(tin.scale[0]):.6g}, {int(tin.zero_point[0])}); TFLite Micro's "
            "int8 RELU6 ignores the output quantization, so it would decode this graph wrongly: give the layer "
            "before it a bias or ReLU6 as its own activation (the converter then fuses it)"
        )
    every = np.arange(-128, 128, dtype=np.int8)
    out, _, _ = getattr(IntegerReference(graph), "_" + op.kind.lower())(op, [every])
    return np.asarray(out, np.int8).reshape(256)


def compose_tables(first: np.ndarray | None, then: np.ndarray) -> np.ndarray:
    """The table of ``then`` applied after ``first`` (None: nothing before)."""
    return then if first is None else then[first.astype(np.int64) + 128]


def latent_split_of(graph: Graph, input_size: int) -> int:
    """The split latent's radix the model's metadata names (1: none)."""
    raw = graph.metadata.get(LATENT_SPLIT_METADATA)
    if raw is None:
        return 1
    text = raw.decode(errors="replace")
    radix = int(text) if text.isdigit() and len(text) < 4 else 0
    if radix < 2 or radix & (radix - 1) or input_size % 2:
        raise UnsupportedOpError(
            f"metadata {LATENT_SPLIT_METADATA} is {text[:20]!r} for {input_size} inputs; it must be a power of "
            "two >= 2 on an even input size: re-export the decoder with python -m export"
        )
    return radix


def _feeds_subpixel_conv(graph: Graph, op, nxt, only_consumer) -> bool:
    """True when ``op`` (a convolution) feeds a CONV_2D whose output goes through DEPTH_TO_SPACE(2)."""
    if op.kind != "CONV_2D" or nxt is None or nxt.kind != "CONV_2D":
        return False
    if graph.tensors[op.outputs[0]].shape[-1] % 4:
        return False
    after = only_consumer(nxt.outputs[0])
    return after is not None and after.kind == "DEPTH_TO_SPACE" and int(after.options["blockSize"]) == 2


def _lower_conv(graph: Graph, op, views: dict, layer_shapes: list, bo: int) -> ConvLayer:
    t = graph.tensors
    transpose = op.kind == "TRANSPOSE_CONV"
    ops = operands(op)
    x_i, w_i, b_i = ops.x, ops.weights, ops.bias
    inp, filt, out = t[x_i], t[w_i], t[op.outputs[0]]
    for tensor, what in ((inp, "input"), (out, "output")):
        check_int8(tensor, f"the {op.kind} {what}")
    v = views.get(x_i)
    if v is None:
        raise UnsupportedOpError(f"{op.kind} reads a tensor the generator did not produce")
    if np.any(np.asarray(filt.zero_point) != 0):
        raise UnsupportedOpError(f"{op.kind} with asymmetric weights is not supported")
    w = np.asarray(filt.data, np.int64)  # (OC', kh, kw, IC')
    oc_phys, kh, kw, ic_phys = w.shape
    _, h, wd, _ = inp.shape
    _, oh, ow, _ = out.shape
    sh, sw = int(op.options["strideH"]), int(op.options["strideW"])
    bias = t[b_i].data.astype(np.int64) if b_i >= 0 else np.zeros(oc_phys, np.int64)
    mult, shift = per_channel_multipliers(inp, filt, out, oc_phys)
    lo, hi = activation_range(out, op.options.get("activation"))
    src_shape = layer_shapes[v.layer]
    taps: dict[tuple[int, int], dict[tuple[int, int], np.ndarray]] = {}  # phase -> tap -> (OC, IC)
    if transpose:
        if sh != sw or v.block != 1 or v.pad_t or v.pad_l or bo != 1:
            raise UnsupportedOpError("TRANSPOSE_CONV is supported with equal strides, on an unpadded image")
        ph = same_padding(sh, oh, kh, -(-oh // sh)) if op.options["padding"] == "SAME" else 0
        pw = same_padding(sw, ow, kw, -(-ow // sw)) if op.options["padding"] == "SAME" else 0
        if (h - 1) * sh + kh - ph < oh or (wd - 1) * sw + kw - pw < ow:
            raise UnsupportedOpError("TRANSPOSE_CONV with this padding/shape combination is not supported")
        P, Q, oc, ic = sh, 1, oc_phys, ic_phys
        for py in range(P):
            for px in range(P):
                d = taps.setdefault((py, px), {})
                for ky in range(kh):
                    if (py + ph - ky) % P:
                        continue
                    for kx in range(kw):
                        if (px + pw - kx) % P:
                            continue
                        d[((py + ph - ky) // P, (px + pw - kx) // P)] = w[:, ky, kx, :]
        chan = {(py, px): np.arange(oc) for py in range(P) for px in range(P)}
    else:
        if (
            sh != 1
            or sw != 1
            or op.options.get("dilationHFactor", 1) != 1
            or op.options.get("dilationWFactor", 1) != 1
        ):
            raise UnsupportedOpError("CONV_2D is supported with stride 1 and no dilation")
        ph = same_padding(1, h, kh, oh) if op.options["padding"] == "SAME" else 0
        pw = same_padding(1, wd, kw, ow) if op.options["padding"] == "SAME" else 0
        bi = v.block
        if ic_phys % (bi * bi) or oc_phys % (bo * bo):
            raise UnsupportedOpError("CONV_2D channels do not divide into the depth-to-space blocks")
        P, Q, oc, ic = bo, bi, oc_phys // (bo * bo), ic_phys // (bi * bi)
        pht, plt = ph + v.pad_t, pw + v.pad_l
        chan = {}
        for cy in range(bo):
            for cx in range(bo):
                rows = np.arange(oc) + (cy * bo + cx) * oc
                chan[(cy, cx)] = rows
                d = taps.setdefault((cy, cx), {})
                for ky in range(kh):
                    for kx in range(kw):
                        for qy in range(bi):
                            for qx in range(bi):
                                cols = np.arange(ic) + (qy * bi + qx) * ic
                                d[(bi * (ky - pht) + qy, bi * (kx - plt) + qx)] = w[rows][:, ky, kx, :][
                                    :, cols
                                ]
    in_shape = (src_shape[0], src_shape[1], src_shape[2])
    if (v.pad_t or v.pad_l) and v.block != 1:
        raise UnsupportedOpError("PAD of a depth-to-space view is not supported")
    if in_shape[2] != ic or in_shape[0] > h * v.block or in_shape[1] > wd * v.block:
        raise UnsupportedOpError(
            f"{op.kind} reads {(h, wd, ic_phys)}, which does not match the image {in_shape}"
        )
    if ic % 4:
        raise UnsupportedOpError(f"{op.kind} reads {ic} channels; the generator needs a multiple of 4")
    phases = []
    for py in range(P):
        for px in range(P):
            d = taps[(py, px)]
            keep = sorted(k for k, m in d.items() if np.any(m))
            rows = chan[(py, px)]
            if not keep:  # a phase with no real tap: its outputs are the bias alone
                keep = [sorted(d)[0]]
            phases.append(
                Phase(
                    taps=tuple(keep),
                    weights=np.stack([d[k] for k in keep], axis=1).astype(np.int8),
                    bias=bias[rows],
                    mult=np.asarray(mult)[rows],
                    shift=np.asarray(shift)[rows],
                )
            )
    return ConvLayer(
        kind=op.kind,
        in_shape=in_shape,
        in_zp=int(inp.zero_point[0]),
        out_shape=(oh * bo, ow * bo, oc),
        P=P,
        Q=Q,
        phases=tuple(phases),
        out_zp=int(out.zero_point[0]),
        lo=lo,
        hi=hi,
    )


def run_plan(plan: DecoderPlan, z: np.ndarray) -> np.ndarray:
    """The lowered decoder in numpy (whole images, no streaming): int8 (1, H, W, C) logits for one int8 latent."""
    d = plan.dense
    acc = d.weights.astype(np.int64) @ (np.asarray(z, np.int64).reshape(-1) - d.in_zp) + d.bias
    x = _table(
        np.clip(multiply_by_quantized_multiplier(acc, d.mult, d.shift) + d.out_zp, d.lo, d.hi), d.lut
    ).reshape(d.out_shape)
    for layer in plan.convs:
        ih, iw, ic = layer.in_shape
        m = 4 * max(layer.Q, 1) + 4
        xp = np.zeros((ih + 2 * m, iw + 2 * m, ic), np.int64)
        xp[m : m + ih, m : m + iw] = x.astype(np.int64) - layer.in_zp
        out = np.zeros(layer.out_shape, np.int64)
        P, Q = layer.P, layer.Q
        for p, ph in enumerate(layer.phases):
            py, px = divmod(p, P)
            ny, nx = layer.phase_pixels(py, px)
            acc = np.broadcast_to(ph.bias, (ny, nx, len(ph.bias))).copy()
            for k, (dy, dx) in enumerate(ph.taps):
                patch = xp[m + dy : m + dy + Q * (ny - 1) + 1 : Q, m + dx : m + dx + Q * (nx - 1) + 1 : Q]
                acc += patch @ ph.weights[:, k, :].astype(np.int64).T
            q = multiply_by_quantized_multiplier(acc, ph.mult, ph.shift) + layer.out_zp
            out[py::P, px::P] = np.clip(q, layer.lo, layer.hi)
        x = _table(out, layer.lut)
    return x.astype(np.int8).reshape(1, *plan.out_shape)


def _table(x: np.ndarray, lut: np.ndarray | None) -> np.ndarray:
    return x if lut is None else lut.astype(np.int64)[np.asarray(x, np.int64) + 128]
