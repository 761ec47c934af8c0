"""Generate a self-contained C99 int8 decoder from a full-int8 batch-1 ``.tflite`` decoder, bit-exact with TFLM.

    python -m firmware_sim.codegen artifacts/vae2d/export --graph subpixel --out build/firmware
    from firmware_sim.codegen import generate
    gen = generate(source="artifacts/vae2d/export", out="build/firmware", graph="subpixel")

How: the graph is lowered to a chain of *phase convolutions* over logical images (rows × columns × channels).
Output pixel (P·Y + py, P·X + px) of a layer reads input pixels (Q·Y + dy, Q·X + dx) for the taps (dy, dx) of
its phase (py, px); pixels outside the input contribute nothing. A stride-2 TRANSPOSE_CONV in gather form, a
PAD → CONV_2D → DEPTH_TO_SPACE sub-pixel layer and a stride-1 convolution are all this one form, so both graphs
share one kernel; taps whose weights are all zero (the sub-pixel kernels' padding) are not stored. Every layer
computes one output row at a time when its consumer asks for it, so each activation lives in a ring of a few
rows. The arithmetic is the one :mod:`firmware_sim.reference` reproduces (int32 sums, int32 bias, TFLite's
MultiplyByQuantizedMultiplier per output channel, output zero point, clamp); integer sums are exact, so the
order of accumulation does not change a byte. :func:`run_plan` evaluates the lowered form in numpy, so the
lowering is checked against the reference without a compiler.

What it takes: a (1, D) int8 latent, one FULLY_CONNECTED on it, a RESHAPE to an
image, then a chain of CONV_2D / TRANSPOSE_CONV / PAD / DEPTH_TO_SPACE ending in any (1, H, W, C) int8 image;
standalone activations (LOGISTIC, TANH, LEAKY_RELU, RELU, RELU6) after any layer, each the table of its 256
int8 outputs (computed by :mod:`firmware_sim.reference` with TFLite Micro's arithmetic) applied to the rows that
layer writes; the header states the shapes (``<M>_INPUT_SIZE``, ``<M>_OUTPUT_H/W/C``, ``<M>_OUTPUT_SIZE``).
Anything else is refused with one line naming it.

The C picks its inner loops at compile time: Cortex-M4 DSP (SMLAD), portable C (``-DVAE_EDGE_PORTABLE``), and
128-bit SIMD on x86 (SSE2) and WebAssembly (``-msimd128``). The SIMD build reads its own copy of the weights
(int16, in blocks of 16 output channels, :func:`simd_weights`) so that two pixels' activation pairs can be
broadcast against sixteen channels with no horizontal sums; WebAssembly also requantizes four outputs at once.

The graph is not trusted (issue 23): before any C is written, :func:`check_graph` recomputes every op's output
shape from its input, constants and options and checks it against the file, with each buffer's size, every
index, stride, kernel, block, padding, scale and zero point, within the bounds of :mod:`.checks` (MAX_*);
:func:`check_plan` bounds the multipliers (shift in [-31, 30]) and every int32 sum the C forms. A refusal is
one :class:`~firmware_sim.graph.InvalidGraphError` line; the .h and .c are replaced together or not at all.

Modules: ``plan`` (the lowered form), ``checks`` (what is refused), ``lowering`` (graph -> plan, and its numpy
run), ``scheduling`` (the row rings), ``layouts`` (each instruction set's weight layout), ``emit`` (the
model-specific C; the kernels are the C files of ``kernels/``, copied in), ``generator`` (files in, files
out), ``__main__`` (the command line).
"""

from __future__ import annotations

from .checks import (
    ACC_LIMIT,
    ACTIVATIONS,
    MAX_DIM,
    MAX_IMAGE_VALUES,
    MAX_INPUT_OFFSET,
    MAX_KERNEL,
    MAX_LATENT_DIM,
    MAX_PAD,
    MAX_STRIDE,
    MAX_WEIGHT_BYTES,
    SCALE_RANGE,
    check_graph,
    check_plan,
    check_prior,
)
from .emit import c_identifier, emit_c, kernel_source
from .generator import GeneratedDecoder, exported_sources, generate, resolve_source, write_files_together
from .layouts import (
    RELAXED_QUADS_MAX,
    SIMD_TAPS_MAX,
    pack_weights,
    relaxed_eligible,
    relaxed_weights,
    simd_eligible,
    simd_weights,
    uniform_right_shift,
)
from .lowering import lower, run_plan
from .plan import GRAPHS, IMAGE_SHAPE, SUPPORTED_OPS, ConvLayer, DecoderPlan, DenseLayer, Phase
from .scheduling import Schedule, schedule

__all__ = [
    "ACC_LIMIT",
    "ACTIVATIONS",
    "GRAPHS",
    "IMAGE_SHAPE",
    "MAX_DIM",
    "MAX_IMAGE_VALUES",
    "MAX_INPUT_OFFSET",
    "MAX_KERNEL",
    "MAX_LATENT_DIM",
    "MAX_PAD",
    "MAX_STRIDE",
    "MAX_WEIGHT_BYTES",
    "RELAXED_QUADS_MAX",
    "SCALE_RANGE",
    "SIMD_TAPS_MAX",
    "SUPPORTED_OPS",
    "ConvLayer",
    "DecoderPlan",
    "DenseLayer",
    "GeneratedDecoder",
    "Phase",
    "Schedule",
    "c_identifier",
    "check_graph",
    "check_plan",
    "check_prior",
    "emit_c",
    "generate",
    "kernel_source",
    "lower",
    "main",
    "pack_weights",
    "parse_args",
    "relaxed_eligible",
    "relaxed_weights",
    "exported_sources",
    "resolve_source",
    "run_plan",
    "schedule",
    "simd_eligible",
    "simd_weights",
    "uniform_right_shift",
    "write_files_together",
]


def __getattr__(name: str):
    # The command line lives in __main__ (python -m firmware_sim.codegen); importing it here eagerly would
    # make runpy warn that the module was already imported before it runs it.
    if name in ("main", "parse_args"):
        from . import __main__ as cli

        return getattr(cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
