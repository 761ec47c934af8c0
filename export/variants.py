"""The artifacts export produces for each model, as data: one :class:`Variant` per file.

Names: ``decoder_<graph>_<precision>[_fio]_b<batch>.<ext>``, e.g. ``decoder_subpixel_int8_b1.tflite``
(``_fio`` = int8 weights and activations behind float input/output).
"""

from __future__ import annotations

from dataclasses import dataclass

# Validation tolerances against the Keras float decoder, on the [0, 1] pixel scale.
TOLERANCE_MAX_ABS = {"float32": 1e-5, "float16": 2e-3}
TOLERANCE_MEAN_ABS = {"dynamic_int8": 0.01, "int8": 0.01}
SUBPIXEL_FLOAT_MAX_ABS = 1e-5  # the sub-pixel rewrite is exact in float
INT8_SIZE_RATIO_GOAL = 0.30  # int8 decoder file vs float32 file (reported, not enforced)


@dataclass(frozen=True)
class Variant:
    role: str  # decoder | encoder | classifier
    format: str  # tflite | onnx
    precision: str  # float32 | float16 | dynamic_int8 | int8
    io: str  # float | int8
    graph: str  # transpose | subpixel | - (encoder, classifier)
    batch: int

    @property
    def filename(self) -> str:
        ext = "tflite" if self.format == "tflite" else "onnx"
        if self.role != "decoder":
            return f"{self.role}_{self.precision}_b{self.batch}.{ext}"
        fio = "_fio" if self.precision == "int8" and self.io == "float" else ""
        return f"decoder_{self.graph}_{self.precision}{fio}_b{self.batch}.{ext}"

    @property
    def output_activation(self) -> str | None:
        """What the app applies to the output: full-integer decoders end at their int8 logits."""
        if self.role == "decoder" and self.precision == "int8" and self.io == "int8":
            return "sigmoid"
        return None

    @property
    def is_quantized(self) -> bool:
        return self.precision in TOLERANCE_MEAN_ABS

    def tolerance(self) -> dict:
        if self.precision in TOLERANCE_MAX_ABS:
            return {"max_abs": TOLERANCE_MAX_ABS[self.precision]}
        return {"mean_abs": TOLERANCE_MEAN_ABS[self.precision]}


def decoder_variants(batches: tuple[int, ...]) -> list[Variant]:
    out = []
    for b in batches:
        out += [
            Variant("decoder", "tflite", "float32", "float", "transpose", b),
            Variant("decoder", "tflite", "float16", "float", "transpose", b),
            Variant("decoder", "tflite", "dynamic_int8", "float", "transpose", b),
            Variant("decoder", "tflite", "int8", "int8", "transpose", b),
            Variant("decoder", "tflite", "int8", "float", "transpose", b),
            Variant("decoder", "tflite", "float32", "float", "subpixel", b),
            Variant("decoder", "tflite", "int8", "int8", "subpixel", b),
            Variant("decoder", "tflite", "int8", "float", "subpixel", b),
            Variant("decoder", "onnx", "float32", "float", "transpose", b),
            Variant("decoder", "onnx", "int8", "float", "transpose", b),
            Variant("decoder", "onnx", "float32", "float", "subpixel", b),
            Variant("decoder", "onnx", "int8", "float", "subpixel", b),
        ]
    return out


def encoder_variants(batches: tuple[int, ...]) -> list[Variant]:
    return [Variant("encoder", "tflite", "float32", "float", "-", b) for b in batches]


def classifier_variants(batches: tuple[int, ...]) -> list[Variant]:
    return [Variant("classifier", "tflite", "float32", "float", "-", b) for b in batches]
