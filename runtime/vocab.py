"""The one vocabulary of vae-edge: model names, artifact kinds and their tolerances, each defined once.

Every stage (train, export, runtime, firmware_sim, tools) and every CLI ``choices=`` takes its words from here,
so a new precision or graph is added in one place. numpy-free and side-effect-free; ships with the runtime.

    from runtime.vocab import ArtifactSpec, Precision, VAE_MODELS
    spec = ArtifactSpec(role="decoder", format="tflite", precision="int8", io="int8", graph="subpixel", batch=1)
    spec.filename          # 'decoder_subpixel_int8_b1.tflite'
    spec.tolerance         # Tolerance(max_abs=None, mean_abs=0.01): against the Keras float decoder
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum

VAE_MODELS = ("vae2d", "vae3d", "vae2d_corr")
CLASSIFIER = "classifier"
ALL_MODELS = (*VAE_MODELS, CLASSIFIER)
ALL = "all"  # the CLIs' "every model" choice


class Role(StrEnum):
    DECODER = "decoder"
    ENCODER = "encoder"
    CLASSIFIER = "classifier"


class Format(StrEnum):
    TFLITE = "tflite"
    ONNX = "onnx"
    C = "c"  # the C array of a .tflite file, for TFLite Micro


class Precision(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    DYNAMIC_INT8 = "dynamic_int8"  # int8 weights, float activations
    INT8 = "int8"  # int8 weights and activations

    @property
    def is_quantized(self) -> bool:
        return self is not Precision.FLOAT32


class IO(StrEnum):
    FLOAT = "float"
    INT8 = "int8"


class Graph(StrEnum):
    TRANSPOSE = "transpose"  # the decoder as trained: Conv2DTranspose layers
    SUBPIXEL = "subpixel"  # the deployment rewrite: Conv2D + depth-to-space, same function
    NONE = "-"  # encoders and the classifier have one graph


class OutputActivation(StrEnum):
    SIGMOID = "sigmoid"  # full-int8 decoders end at their int8 logits; the app applies the sigmoid


@dataclass(frozen=True)
class Tolerance:
    """How far an artifact may be from its Keras float32 original, on the [0, 1] pixel scale."""

    max_abs: float | None = None
    mean_abs: float | None = None

    def __post_init__(self):
        if (self.max_abs is None) == (self.mean_abs is None):
            raise ValueError("a Tolerance bounds either the max or the mean absolute error")

    def failures(self, *, max_abs_err: float, mean_abs_err: float) -> list[str]:
        """The bounds broken (empty when within; NaN breaks every bound)."""
        out = []
        if self.max_abs is not None and not max_abs_err <= self.max_abs:
            out.append(f"max abs error {max_abs_err:.3g} > {self.max_abs:g}")
        if self.mean_abs is not None and not mean_abs_err <= self.mean_abs:
            out.append(f"mean abs error {mean_abs_err:.3g} > {self.mean_abs:g}")
        return out

    def to_json(self) -> dict:
        return {k: v for k, v in (("max_abs", self.max_abs), ("mean_abs", self.mean_abs)) if v is not None}


# Against the Keras float decoder, per precision: float formats exact to rounding, int8 at a task level.
DECODER_TOLERANCE = {
    Precision.FLOAT32: Tolerance(max_abs=1e-5),
    Precision.FLOAT16: Tolerance(max_abs=2e-3),
    Precision.DYNAMIC_INT8: Tolerance(mean_abs=0.01),
    Precision.INT8: Tolerance(mean_abs=0.01),
}
# Encoders and the classifier are exported in float32 only; their outputs (latents, logits, features) are
# not pixels, so they get their own bound.
FLOAT_IMAGE_MODEL_TOLERANCE = Tolerance(max_abs=1e-4)
SUBPIXEL_REWRITE_TOLERANCE = Tolerance(max_abs=1e-5)  # the sub-pixel graph is the same function in float
INT8_SIZE_RATIO_GOAL = 0.30  # int8 decoder file vs float32 file (reported by export, not enforced)


@dataclass(frozen=True)
class ArtifactSpec:
    """One exported file, as data. Impossible combinations are refused when it is built.

    Names: ``decoder_<graph>_<precision>[_fio]_b<batch>.<ext>`` (``_fio``: an int8 body behind float input
    and output), ``<role>_<precision>_b<batch>.tflite`` for encoders and the classifier.
    """

    role: Role
    format: Format
    precision: Precision
    io: IO
    graph: Graph
    batch: int

    def __post_init__(self):
        for f in fields(self):
            if f.name != "batch":  # accept plain strings; store the enum (raises on an unknown word)
                enum = {"role": Role, "format": Format, "precision": Precision, "io": IO, "graph": Graph}[
                    f.name
                ]
                object.__setattr__(self, f.name, enum(getattr(self, f.name)))
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f"batch must be a positive integer, got {self.batch!r}")
        if (self.role is Role.DECODER) == (self.graph is Graph.NONE):
            raise ValueError(f"a {self.role} artifact cannot have graph {self.graph!r}")
        if self.io is IO.INT8 and self.precision is not Precision.INT8:
            raise ValueError(f"int8 input/output needs int8 precision, not {self.precision}")
        if self.role is not Role.DECODER and self.precision is not Precision.FLOAT32:
            raise ValueError(f"{self.role} artifacts are float32 only")
        if self.format is Format.ONNX and self.precision in (Precision.FLOAT16, Precision.DYNAMIC_INT8):
            raise ValueError(f"ONNX artifacts are float32 or int8 (QDQ), not {self.precision}")
        if self.format is Format.ONNX and self.io is IO.INT8:
            raise ValueError("ONNX int8 decoders keep float input and output")
        if self.format is Format.C and (self.precision, self.io) != (Precision.INT8, IO.INT8):
            raise ValueError("the C array holds the full-int8 (int8 I/O) decoder only")

    @classmethod
    def from_entry(cls, entry: dict) -> ArtifactSpec:
        """The spec of a manifest entry (which carries these six fields among others)."""
        return cls(**{f.name: entry[f.name] for f in fields(cls)})

    def to_json(self) -> dict:
        return {
            f.name: (v.value if isinstance(v := getattr(self, f.name), StrEnum) else v) for f in fields(self)
        }

    @property
    def filename(self) -> str:
        ext = {Format.TFLITE: "tflite", Format.ONNX: "onnx", Format.C: "cc"}[self.format]
        if self.role is not Role.DECODER:
            return f"{self.role}_{self.precision}_b{self.batch}.{ext}"
        fio = "_fio" if self.precision is Precision.INT8 and self.io is IO.FLOAT else ""
        return f"decoder_{self.graph}_{self.precision}{fio}_b{self.batch}.{ext}"

    @property
    def output_activation(self) -> OutputActivation | None:
        """What the app applies to the output: full-integer decoders end at their int8 logits."""
        if self.role is Role.DECODER and self.precision is Precision.INT8 and self.io is IO.INT8:
            return OutputActivation.SIGMOID
        return None

    @property
    def tolerance(self) -> Tolerance:
        if self.role is Role.DECODER:
            return DECODER_TOLERANCE[self.precision]
        return FLOAT_IMAGE_MODEL_TOLERANCE


def default_decoder_graph(precision: Precision | str) -> Graph:
    """The graph a runtime user gets unless they ask: the fastest one exported for that precision."""
    return Graph.SUBPIXEL if Precision(precision) is Precision.INT8 else Graph.TRANSPOSE
