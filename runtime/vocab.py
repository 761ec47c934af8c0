"""The one vocabulary of vae-edge: model names, artifact kinds and their tolerances, each defined once.

Every stage (train, export, runtime, firmware_sim, tools) and every CLI ``choices=`` takes its words from here,
so a new precision or graph is added in one place. numpy-free and side-effect-free; ships with the runtime.

    from runtime.vocab import ArtifactSpec, Precision, VAE_MODELS
    spec = ArtifactSpec(role="decoder", format="tflite", precision="int8", io="int8", graph="subpixel", batch=1)
    spec.filename          # 'decoder_subpixel_int8_b1.tflite'
    spec.arithmetic        # Arithmetic(weights=INT8, activations=INT8, ...): its bound is derived per model
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum

# The built-in VAEs, in training order. Each one's config, training defaults and goal are its entry in
# train/registry.py (which the shipped runtime cannot import); tests/test_registry.py checks the two agree.
VAE_MODELS = ("vae2d", "vae3d", "vae2d_corr")
CLASSIFIER = "classifier"
ALL_MODELS = (*VAE_MODELS, CLASSIFIER)
ALL = "all"  # the CLIs' "every model" choice
# An exported model's name, its folder under --artifacts (python -m export --decoder --name; not "." or "..").
EXPORT_NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}"


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
        if self.max_abs is None and self.mean_abs is None:
            raise ValueError("a Tolerance bounds the max or the mean absolute error (or both)")

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


# How each precision computes, for the per-model bounds export derives (export/bounds.py). Nothing here is a
# fitted margin: a decoder artifact is validated against the bound its own weights and the validation latents
# give under this arithmetic, so a correct conversion cannot fail it, and it scales with the model (a fixed
# max abs of 2e-3 for float16 failed a correctly converted, freshly trained vae2d at 2.04e-3).
UNIT_ROUNDOFF = {Precision.FLOAT32: 2.0**-24, Precision.FLOAT16: 2.0**-11}


@dataclass(frozen=True)
class Arithmetic:
    """How an artifact rounds: its stored weights, its activations, and its sums of products.

    ``weights``: FLOAT32 (as trained), FLOAT16 (each weight and bias rounded to nearest float16) or INT8
    (symmetric, one scale per tensor: within half a step of max|W| / 127; per-channel scales are finer).
    ``activations``: FLOAT32 (kept), FLOAT16 (each tensor stored in float16), DYNAMIC_INT8 (each layer's input
    quantized at run time to its batch's largest magnitude: within half a step of max|x̂| / 127) or INT8 (every
    tensor quantized to its calibrated range: half a step of (hi − lo) / 255 inside it, the clipped distance
    outside). ``accumulation_roundoff``: the unit roundoff of the sums (float32 everywhere: int32 sums are
    exact, but float kernels remain around them — the float Dense of int8 ONNX, dequantize-and-scale of the
    dynamic-range kernels, the float sigmoid).
    """

    weights: Precision
    activations: Precision
    accumulation_roundoff: float = UNIT_ROUNDOFF[Precision.FLOAT32]

    def __post_init__(self):
        object.__setattr__(self, "weights", Precision(self.weights))
        object.__setattr__(self, "activations", Precision(self.activations))
        if self.weights is Precision.DYNAMIC_INT8:
            raise ValueError("weights are float32, float16 or int8")


FLOAT32_ARITHMETIC = Arithmetic(Precision.FLOAT32, Precision.FLOAT32)  # also the Keras reference's own
DECODER_ARITHMETIC = {
    Precision.FLOAT32: FLOAT32_ARITHMETIC,
    # The converter stores the weights as float16 and dequantizes them once; the kernels then run in float32
    # (an emulated Pi 5, whose cores have float16 arithmetic, matched the host's float16 outputs to 4.7e-6).
    Precision.FLOAT16: Arithmetic(Precision.FLOAT16, Precision.FLOAT32),
    Precision.DYNAMIC_INT8: Arithmetic(Precision.INT8, Precision.DYNAMIC_INT8),
    Precision.INT8: Arithmetic(Precision.INT8, Precision.INT8),
}
# The float sigmoid kernels are polynomial or exp-based approximations. Against float64 on 400,000 float32
# inputs over [-20, 20], the worst absolute errors were 1.5e-7 (ONNX Runtime), 1.4e-7 (Keras), 8.9e-8 (numpy,
# runtime.Decoder) and 8.6e-8 (TFLite): at most 2.6 float32 ulps of 1. 2^-20 (16 ulps, 9.5e-7) is a margin of 6.
SIGMOID_KERNEL_ABS_ERROR = 2.0**-20
# int8 formats: measured mean abs error / the quantization-noise model's prediction (export/bounds.py:
# noise_mean_abs) over the 52 decoders of tests/test_tolerance.py (Keras init × 0.5, 1, 2, 4, both graphs):
# at most 1.78 for int8 ONNX (median 0.80), 1.62 for int8 TFLite (0.78), 0.88 for dynamic-range (0.31).
# 4 is a margin of 2.2 over the largest.
NOISE_MODEL_MARGIN = 4.0
# The largest max abs error of a dynamic-range artifact against Keras over those 52 decoders (a ×4 one, its
# logits near 0 where the sigmoid is steepest): see PLATFORM_TOLERANCE.
DYNAMIC_INT8_MAX_ERR = 0.0542


@dataclass(frozen=True)
class PlatformTolerance:
    """How far one artifact's raw outputs may differ between two machines that both run it correctly (the
    emulated Raspberry Pi against the host: tools/pi/check.py). ``max_abs=0``: bit-exact."""

    max_abs: float
    why: str

    def passed(self, max_abs_diff: float) -> bool:
        return max_abs_diff <= self.max_abs  # NaN fails


# Per precision of the artifact (encoders and the classifier are float32). Float outputs only: every integer
# output (the int8 logits of int8-I/O decoders) must be bit-exact, the integer kernels round alike everywhere.
PLATFORM_TOLERANCE = {
    # Two float32 evaluations of the same stored weights differ only in the order of their sums (and FMA);
    # seen at most 4.7e-6 on the emulated Pi 4 and Pi 5. A wrong kernel moves pixels by > 1e-3.
    Precision.FLOAT32: PlatformTolerance(1e-5, "float32 sums of the same weights, in another order"),
    Precision.FLOAT16: PlatformTolerance(1e-5, "float16 weights dequantized once, then float32 as above"),
    # The integer body is bit-exact (its int8-I/O twin is checked so); around it only float32 ops remain:
    # the float Dense of int8 ONNX, QUANTIZE/DEQUANTIZE, the float sigmoid.
    Precision.INT8: PlatformTolerance(1e-5, "an integer body, bit-exact, between float32 ends"),
    # Activations are quantized at run time, and the kernel paths differ in how (x86 and arm64 XNNPACK, the
    # built-in hybrid kernels: symmetric or asymmetric, per row or per tensor, rounding of ties), so one
    # machine may put an activation on the neighbouring int8 level. Each machine is then within the
    # dynamic-range error of the Keras decoder, so the two differ by at most twice it: 2 × DYNAMIC_INT8_MAX_ERR,
    # the largest |dynamic-range artifact − Keras| over the 52 decoders of tests/test_tolerance.py. The margin
    # is in what it was measured on: trained decoders differ across boards by 7.1e-4 and 1.75e-3 (an emulated
    # Pi 5 against x86), 60 times less; a wrong kernel gives garbage, not a tenth of a grey level.
    Precision.DYNAMIC_INT8: PlatformTolerance(
        2 * DYNAMIC_INT8_MAX_ERR, "activations quantized at run time, possibly to a neighbouring level"
    ),
}
# Encoders and the classifier are exported in float32 only; their outputs (latents, logits, features) are
# not pixels, so they get their own bound.
FLOAT_IMAGE_MODEL_TOLERANCE = Tolerance(max_abs=1e-4)
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
    def arithmetic(self) -> Arithmetic:
        """How the artifact rounds; a decoder's tolerance is derived from it per model (export/bounds.py)."""
        return DECODER_ARITHMETIC[self.precision]

    @property
    def tolerance(self) -> Tolerance:
        """The fixed bound of encoders and the classifier. A decoder has none: its bound follows from its
        weights and :attr:`arithmetic`, and is recorded in its manifest entry (``validation.tolerance``)."""
        if self.role is Role.DECODER:
            raise ValueError(
                f"{self.filename}: a decoder's tolerance is computed per model (export/bounds.py)"
            )
        return FLOAT_IMAGE_MODEL_TOLERANCE


def default_decoder_graph(precision: Precision | str) -> Graph:
    """The graph a runtime user gets unless they ask: the fastest one exported for that precision."""
    return Graph.SUBPIXEL if Precision(precision) is Precision.INT8 else Graph.TRANSPOSE
