"""Keras model -> TFLite / ONNX bytes, one function per target format. Pure: nothing here writes files.

Established on these machines: ``TFLiteConverter.from_keras_model`` works (``from_concrete_functions`` with a
trackable object silently yields a NaN model); every model is built with a static batch so the converter emits
no SHAPE/STRIDED_SLICE ops; tf2onnx needs an explicit ``input_signature``.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tensorflow.lite.python.schema_py_generated import BuiltinOperator

# The int8 range of the tensor that feeds the sigmoid is cut to [-LOGIT_CLIP, LOGIT_CLIP]. Calibration sees
# logits down to about -56 (the black background), which makes one int8 step ~0.3 logits: up to 0.07 of pixel
# error near 0.5. Past ±10 the sigmoid is within 4.6e-5 of 0 or 1.
LOGIT_CLIP = 10.0
# Calibration latents are clipped to ±CALIBRATION_LATENT_CLIP, which sets the int8 input's range: a 2-D latent's
# int8 step decides how many decoded digits change class, while a posterior latent past the clip costs −ELBO
# (1.5% of vae2d's lie past ±3). With INT8_RANGES, ±3.5 beat ±3 on Δ−ELBO for all three models (vae2d +0.30
# against +0.45 nat) at agreement ≥ 97.8% (tools/quant_sweep.py on the validation split; docs/results.md).
CALIBRATION_LATENT_CLIP = 3.5
# How the hidden activations' int8 ranges are set (export/calibrate.py): each clipped at its 0.1% / 99.9%
# quantiles. On the validation split (Xeon seed 0) it beat the converter's min-max, the least-error clip and the
# 99%, 99.99% and 99.999% quantiles on Δ−ELBO for all three models (vae2d at ±3.5: min-max 96.68% / +0.54 nat,
# p99.9 97.80% / +0.30); per-channel convolution weights did not help (docs/results.md).
INT8_RANGES = "p99.9"
# The same rule for the ONNX int8 decoders: onnxruntime's percentile calibration keeps the central 99.8% of each
# activation's values (0.1% cut on each side; their latent stays float). vae3d on the validation split: min-max
# 97.89% / +0.45 nat, this 99.21% / +0.09 (99.98%: 99.01% / +0.16); vae2d 99.03% / +0.11.
ONNX_CALIB_PERCENTILE = 99.8


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the converters' chatter (SavedModel listings, MLIR logs) on stdout/stderr."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        yield


def batches_of(samples: np.ndarray, batch: int) -> list[np.ndarray]:
    return [samples[i : i + batch] for i in range(0, len(samples) - batch + 1, batch)]


def to_tflite(
    model,
    precision: str,
    io_type: str = "float",
    calibration: np.ndarray | None = None,
    ranges: str = INT8_RANGES,
    per_channel: bool = False,
) -> bytes:
    """``precision``: float32 | float16 (fp16 weights) | dynamic_int8 | int8 (full integer, calibrated).

    For int8, ``io_type="int8"`` also makes the input and output tensors int8 (what an MCU runs), and the
    Dense layer is quantized per tensor: per-channel tables for its 3136 outputs (scale, zero point, min, max)
    cost ~60 KB — more than its weights — for no accuracy the tolerance needs. ``ranges`` is how the hidden
    activations' int8 ranges are set (export/calibrate.py's RangeMethod); ``per_channel`` gives the convolutions
    (not the Dense layer) one weight scale per output channel.
    """
    import tensorflow as tf

    from . import calibrate

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        if calibration is None:
            raise ValueError("int8 conversion needs calibration latents")
        batch = int(model.inputs[0].shape[0])
        chunks = batches_of(calibration.astype(np.float32), batch)
        converter.representative_dataset = lambda: ([c] for c in chunks)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # Per-tensor scales throughout: the per-channel tables (scale, int64 zero point per channel, on weights
        # and biases) cost ~3 KB here, and on the Dense layer's 3136 outputs ~60 KB, more than its weights.
        # The pixel error is the same either way.
        converter._experimental_disable_per_channel = not per_channel
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        if io_type == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    elif precision not in ("float32", "dynamic_int8"):
        raise ValueError(f"unknown TFLite precision {precision!r}")
    with quiet():
        if precision == "int8" and calibrate.RangeMethod(ranges) is not calibrate.RangeMethod.MINMAX:
            calibrated = calibrate.calibrated_model(converter, chunks)
            narrowed, _ = calibrate.narrow_ranges(calibrated, chunks, calibrate.RangeMethod(ranges))
            model = calibrate.quantize_calibrated(narrowed, io_type=io_type, per_channel=per_channel)
        else:
            model = converter.convert()
    if precision != "int8":
        return model
    return clip_logistic_input_range(strip_internal_names(model))


LOGISTIC, DEQUANTIZE = BuiltinOperator.LOGISTIC, BuiltinOperator.DEQUANTIZE
DATA_MOVEMENT = (BuiltinOperator.DEPTH_TO_SPACE, BuiltinOperator.RESHAPE)
LOGITS_NAME = b"logits"


def _opcode(code) -> int:
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def clip_logistic_input_range(model: bytes, clip: float = LOGIT_CLIP) -> bytes:
    """Narrow the int8 range of every LOGISTIC input to [-clip, clip] ∩ its calibrated range.

    Only the tensor's scale and zero point change: the producing op requantizes to them (saturating, i.e.
    clamping the logits) and LOGISTIC reads them, both deriving their multipliers at prepare time.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    logistic = [i for i, code in enumerate(obj.operatorCodes) if _opcode(code) == LOGISTIC]
    for subgraph in obj.subgraphs:
        for op in subgraph.operators:
            if op.opcodeIndex not in logistic:
                continue
            q = subgraph.tensors[op.inputs[0]].quantization
            if q is None or q.scale is None or len(q.scale) != 1:
                continue
            scale, zp = float(q.scale[0]), int(q.zeroPoint[0])
            lo, hi = max(scale * (-128 - zp), -clip), min(scale * (127 - zp), clip)
            lo, hi = min(lo, 0.0), max(hi, 0.0)  # int8 ranges must hold 0
            new_scale = (hi - lo) / 255.0
            new_zp = int(np.clip(round(-128 - lo / new_scale), -128, 127))
            q.scale = np.array([new_scale], np.float32)
            q.zeroPoint = np.array([new_zp], np.int64)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def int8_decoder_head(model: bytes, io_type: str) -> bytes:
    """The end of a full-int8 decoder: int8 logits out (int8 I/O) or a float sigmoid (float I/O).

    The converter's int8 LOGISTIC rounds pixel probabilities to 1/256 steps (zero point -128), so every
    probability below 1/512 becomes exactly 0, and a likelihood of 0 for a faintly inked test pixel costs ~16
    nats per unit of ink (most of int8's −ELBO cost; docs/results.md, Export). The int8 logits carry everything the
    LOGISTIC input did, so the LOGISTIC is removed:
    int8 I/O graphs output the int8 logits (the app maps them to pixels: the runtime with a sigmoid, a
    microcontroller with the 256-entry table export writes into the C header); float I/O graphs dequantize the
    logits and end with a float LOGISTIC. Data-movement ops after the sigmoid (the converter may place the
    final DEPTH_TO_SPACE there) take the logits' quantization.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    subgraph = obj.subgraphs[0]
    codes = [_opcode(obj.operatorCodes[op.opcodeIndex]) for op in subgraph.operators]
    if codes.count(LOGISTIC) != 1:
        raise ValueError(f"expected one LOGISTIC op in the decoder, found {codes.count(LOGISTIC)}")
    at = codes.index(LOGISTIC)
    logistic = subgraph.operators.pop(at)
    codes.pop(at)
    logits, probs = int(logistic.inputs[0]), int(logistic.outputs[0])
    quant = subgraph.tensors[logits].quantization
    current = logits
    for op, code in zip(subgraph.operators[at:], codes[at:], strict=True):
        if probs in op.inputs:
            op.inputs = np.where(op.inputs == probs, logits, op.inputs).astype(np.int32)
        if current not in op.inputs:
            continue
        if code in DATA_MOVEMENT:
            current = int(op.outputs[0])
            subgraph.tensors[current].quantization = quant
        elif code == DEQUANTIZE and io_type == "float":
            # DEQUANTIZE -> float logits -> LOGISTIC -> the graph's float output
            out = int(op.outputs[0])
            tensor = schema.TensorT()
            tensor.name, tensor.type, tensor.buffer = LOGITS_NAME, schema.TensorType.FLOAT32, 0
            tensor.shape = np.array(subgraph.tensors[out].shape, np.int32)
            subgraph.tensors.append(tensor)
            op.outputs = np.array([len(subgraph.tensors) - 1], np.int32)
            logistic.inputs, logistic.outputs = op.outputs.copy(), np.array([out], np.int32)
            subgraph.operators.append(logistic)
            current = out
            break
        else:
            raise ValueError(f"unexpected op (builtin code {code}) after the decoder's LOGISTIC")
    subgraph.outputs = np.where(subgraph.outputs == probs, logits, subgraph.outputs).astype(np.int32)
    if list(subgraph.outputs) != [current]:
        raise ValueError("the decoder's LOGISTIC does not lead to its output")
    if io_type == "int8":
        subgraph.tensors[current].name = LOGITS_NAME
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def strip_internal_names(model: bytes) -> bytes:
    """Replace the converter's long internal tensor names (``model/layer/op;model/layer/op…``) with ``t<index>``.

    Input and output tensors keep their names. Saves ~1.5 KB per int8 decoder (≈ 2% of it); the graph, weights
    and quantization parameters are untouched, so the outputs are bit-identical.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    for subgraph in obj.subgraphs:
        keep = set(subgraph.inputs) | set(subgraph.outputs)
        for i, tensor in enumerate(subgraph.tensors):
            if i not in keep:
                tensor.name = f"t{i}".encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def to_onnx(model, opset: int = 17) -> bytes:
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec(tuple(model.inputs[0].shape), tf.float32, name=model.inputs[0].name.split(":")[0])]
    with quiet():
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    return proto.SerializeToString()


def quantize_onnx(float_model: bytes, calibration: np.ndarray, input_name: str, batch: int) -> bytes:
    """Static QDQ int8 (per-channel weights, int8 activations) calibrated on ``calibration`` latents.

    Two things make it faster than the float model in ONNX Runtime (docs/results.md, Latency, has the timings):
    DepthToSpace is re-expressed with single-axis transposes (:func:`split_depth_to_space`), and the Dense
    layer stays float (ORT's QGemm is far slower than its float Gemm on a layer this small; the latent then
    also keeps full precision). The sigmoid runs in float on the dequantized logits, as in the TFLite graphs.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    float_model = split_depth_to_space(float_model)
    nodes = onnx.load_from_string(float_model).graph.node
    float_nodes = [n.name for n in nodes if n.op_type in ("Sigmoid", "Gemm", "MatMul")]
    logits = [n.input[0] for n in nodes if n.op_type == "Sigmoid"]
    chunks = batches_of(calibration.astype(np.float32), batch)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(chunks)

        def get_next(self):
            chunk = next(self._it, None)
            return None if chunk is None else {input_name: chunk}

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(float_model)
        with quiet():
            quantize_static(
                str(src),
                str(dst),
                Reader(),
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                nodes_to_exclude=float_nodes,
                calibrate_method=CalibrationMethod.Percentile,
                extra_options={
                    "CalibPercentile": ONNX_CALIB_PERCENTILE,
                    "TensorQuantOverrides": {
                        name: [{"rmin": np.float32(-LOGIT_CLIP), "rmax": np.float32(LOGIT_CLIP)}]
                        for name in logits
                    },
                },
            )
        return dst.read_bytes()


def split_depth_to_space(model_bytes: bytes) -> bytes:
    """Each NCHW DepthToSpace (DCR) -> Transpose to NHWC, Reshape, swap two axes, Reshape, Transpose back.

    Same values (tested exact); every transpose moves one axis, which ONNX Runtime runs on a fast path, while
    its DepthToSpace does a generic 6-D transpose, the largest cost of the int8 sub-pixel decoder. Used for the
    quantized models only: in float, ORT's layout passes make the rewritten graph slower.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model).graph
    shapes = {
        vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
        for vi in [*inferred.value_info, *inferred.input, *inferred.output]
    }
    nodes = []
    for node in graph.node:
        if node.op_type != "DepthToSpace":
            nodes.append(node)
            continue
        attrs = {a.name: a for a in node.attribute}
        b = attrs["blocksize"].i
        if "mode" in attrs and attrs["mode"].s.decode() != "DCR":
            raise ValueError(
                f"{node.name}: only DCR DepthToSpace (what TensorFlow's depth_to_space is) is handled"
            )
        n, channels, h, w = shapes[node.input[0]]
        c = channels // (b * b)
        x, y, p = node.input[0], node.output[0], node.name or node.output[0]
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array([n, h, w, b, b, c], np.int64), f"{p}/shape6"),
                numpy_helper.from_array(np.array([n, h * b, w * b, c], np.int64), f"{p}/shape4"),
            ]
        )
        nodes += [
            helper.make_node("Transpose", [x], [f"{p}/nhwc"], perm=[0, 2, 3, 1], name=f"{p}/to_nhwc"),
            helper.make_node("Reshape", [f"{p}/nhwc", f"{p}/shape6"], [f"{p}/r6"], name=f"{p}/split"),
            helper.make_node(
                "Transpose", [f"{p}/r6"], [f"{p}/t6"], perm=[0, 1, 3, 2, 4, 5], name=f"{p}/interleave"
            ),
            helper.make_node("Reshape", [f"{p}/t6", f"{p}/shape4"], [f"{p}/r4"], name=f"{p}/merge"),
            helper.make_node("Transpose", [f"{p}/r4"], [y], perm=[0, 3, 1, 2], name=f"{p}/to_nchw"),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_input_name(model_bytes: bytes) -> str:
    import onnx

    return onnx.load_from_string(model_bytes).graph.input[0].name
