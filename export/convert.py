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

# The int8 range of the tensor that feeds the sigmoid is cut to [-LOGIT_CLIP, LOGIT_CLIP]. Calibration sees
# logits down to about -56 (the black background), which makes one int8 step ~0.3 logits: up to 0.07 of pixel
# error near 0.5. sigmoid(±8) lies within half an output step (1/512) of 0 and 1, so clamping there changes no
# output pixel by more than 3.4e-4 while making each step ~4x finer.
LOGIT_CLIP = 8.0


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the converters' chatter (SavedModel listings, MLIR logs) on stdout/stderr."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        yield


def batches_of(samples: np.ndarray, batch: int) -> list[np.ndarray]:
    return [samples[i : i + batch] for i in range(0, len(samples) - batch + 1, batch)]


def to_tflite(model, precision: str, io_type: str = "float", calibration: np.ndarray | None = None) -> bytes:
    """``precision``: float32 | float16 (fp16 weights) | dynamic_int8 | int8 (full integer, calibrated).

    For int8, ``io_type="int8"`` also makes the input and output tensors int8 (what an MCU runs), and the
    Dense layer is quantized per tensor: per-channel tables for its 3136 outputs (scale, zero point, min, max)
    cost ~60 KB — more than its weights — for no accuracy the tolerance needs.
    """
    import tensorflow as tf

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
        # Measured on vae2d_corr: mean abs error 1.44e-3 either way.
        converter._experimental_disable_per_channel = True
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        if io_type == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    elif precision not in ("float32", "dynamic_int8"):
        raise ValueError(f"unknown TFLite precision {precision!r}")
    with quiet():
        model = converter.convert()
    return clip_logistic_input_range(strip_internal_names(model)) if precision == "int8" else model


def clip_logistic_input_range(model: bytes, clip: float = LOGIT_CLIP) -> bytes:
    """Narrow the int8 range of every LOGISTIC input to [-clip, clip] ∩ its calibrated range.

    Only the tensor's scale and zero point change: the producing op requantizes to them (saturating, i.e.
    clamping the logits) and LOGISTIC reads them, both deriving their multipliers at prepare time.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    logistic = [
        i
        for i, code in enumerate(obj.operatorCodes)
        if max(code.builtinCode, code.deprecatedBuiltinCode) == 14
    ]
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
    """Static QDQ int8 (per-channel weights, int8 activations) calibrated on ``calibration`` latents."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

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
                extra_options={
                    "TensorQuantOverrides": {
                        name: [{"rmin": np.float32(-LOGIT_CLIP), "rmax": np.float32(LOGIT_CLIP)}]
                        for name in sigmoid_inputs(float_model)
                    }
                },
            )
        return dst.read_bytes()


def sigmoid_inputs(model_bytes: bytes) -> list[str]:
    import onnx

    return [n.input[0] for n in onnx.load_from_string(model_bytes).graph.node if n.op_type == "Sigmoid"]


def onnx_input_name(model_bytes: bytes) -> str:
    import onnx

    return onnx.load_from_string(model_bytes).graph.input[0].name
