"""The artifacts export produces for each model, as data: one :class:`runtime.vocab.ArtifactSpec` per file."""

from __future__ import annotations

from runtime.vocab import ArtifactSpec

# (format, precision, io, graph) of every decoder, exported at each static batch.
DECODER_KINDS = (
    ("tflite", "float32", "float", "transpose"),
    ("tflite", "float16", "float", "transpose"),
    ("tflite", "dynamic_int8", "float", "transpose"),
    ("tflite", "int8", "int8", "transpose"),
    ("tflite", "int8", "float", "transpose"),
    ("tflite", "float32", "float", "subpixel"),
    ("tflite", "int8", "int8", "subpixel"),
    ("tflite", "int8", "float", "subpixel"),
    ("onnx", "float32", "float", "transpose"),
    ("onnx", "int8", "float", "transpose"),
    ("onnx", "float32", "float", "subpixel"),
    ("onnx", "int8", "float", "subpixel"),
)


def decoder_variants(batches: tuple[int, ...]) -> list[ArtifactSpec]:
    return [ArtifactSpec("decoder", f, p, io, g, b) for b in batches for f, p, io, g in DECODER_KINDS]


def encoder_variants(batches: tuple[int, ...]) -> list[ArtifactSpec]:
    return [ArtifactSpec("encoder", "tflite", "float32", "float", "-", b) for b in batches]


def classifier_variants(batches: tuple[int, ...]) -> list[ArtifactSpec]:
    return [ArtifactSpec("classifier", "tflite", "float32", "float", "-", b) for b in batches]
