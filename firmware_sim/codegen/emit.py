"""C emission: ``<model>_decoder.h`` and ``<model>_decoder.c`` from a lowered plan and its row schedule.

Only what is model-specific is written here: the header (sizes, quantization, the prior), the constant tables
(weights in each instruction set's layout, taps, biases, multipliers, the pixel table), the layers' constant
structs, the static rings, and the per-layer call sequence (``ensure<k>``, ``<model>_decode``). The kernels are C files in
``kernels/``, copied in as they are (:func:`kernel_source`); the C picks its inner loops at compile time:
Cortex-M4 DSP (SMLAD), portable C (``-DVAE_EDGE_PORTABLE``), and 128-bit SIMD on x86 (SSE2) and WebAssembly
(``-msimd128``), with WebAssembly relaxed SIMD where every layer suits it (``-DVAE_EDGE_RELAXED_DOT``).
"""

from __future__ import annotations

import functools
import re
from importlib import resources

import numpy as np

from runtime.errors import VaeEdgeError
from runtime.pixels import pixel_lut

from ..graph import UnsupportedOpError
from .checks import check_prior
from .layouts import (
    dense_pairs,
    pack_weights,
    relaxed_eligible,
    relaxed_weights,
    simd_eligible,
    simd_weights,
    stored_dense_weights,
    uniform_right_shift,
)
from .plan import DecoderPlan
from .scheduling import schedule


def c_identifier(name: str) -> str:
    ident = re.sub(r"[^0-9a-zA-Z_]", "_", name)
    return ident if not ident[:1].isdigit() else "m_" + ident


def _array(ctype: str, name: str, values, per_line: int = 16, static: bool = True) -> str:
    vals = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    if not vals:
        vals = ["0"]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    storage = "static const" if static else "const"
    return f"{storage} {ctype} {name}[{len(vals)}] = {{\n  " + ",\n  ".join(lines) + "\n};\n"


def _smallest_int(values) -> str:
    v = np.asarray(values)
    for ctype, bits in (("int8_t", 8), ("int16_t", 16)):
        if v.size and v.min() >= -(2 ** (bits - 1)) and v.max() < 2 ** (bits - 1):
            return ctype
    return "int32_t"


def _words(name: str, words: np.ndarray, per_line: int = 8) -> str:
    vals = [f"0x{int(v):08x}u" for v in words]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    return f"static const uint32_t {name}[{len(vals)}] = {{\n  " + ",\n  ".join(lines) + "\n};\n"


def _float(v: float) -> str:
    return f"{float(np.float32(v))!r}f"


# The kernel files (package data): each copies the lines between these markers; an #include "<file>.h" of
# the folder among them is replaced by that file's copied lines; dsp_strided.h's stride blocks are written
# once per pixel stride. The rest of each file (include guards, includes) only lets it compile on its own.
KERNEL_FILES = "kernels"
KERNELS_TOP = "kernels.h"
_COPIED = re.compile(r"^/\* vae-edge: copy begin \*/\n(.*?)^/\* vae-edge: copy end \*/\n", re.S | re.M)
_INCLUDE = re.compile(r'^#include "([a-z0-9_]+\.h)"\n', re.M)
_EACH_STRIDE = re.compile(
    r"^#if VAE_EDGE_EACH_STRIDE\n(.*?)^#endif /\* VAE_EDGE_EACH_STRIDE \*/\n", re.S | re.M
)
# The pixel strides sb with a DSP kernel: LDRD's immediate offset reaches 1020 bytes, and the second pixel is
# 2·sb − 8 bytes on (8 <= 2·sb <= 1028).
DSP_STRIDES = range(4, 515)


@functools.cache
def kernel_file(name: str) -> str:
    """The copied lines of kernels/``name``, its includes of other kernel files replaced by theirs."""
    text = resources.files(__package__).joinpath(KERNEL_FILES, name).read_text(encoding="utf-8")
    sections = _COPIED.findall(text)
    if not sections:
        raise VaeEdgeError(
            f"firmware_sim/codegen/{KERNEL_FILES}/{name} has no copy begin/end markers; "
            "restore it from the repository"
        )
    return _INCLUDE.sub(lambda m: kernel_file(m.group(1)), "".join(sections))


def kernel_source(strides: list[int]) -> str:
    """The kernels as a generated decoder holds them, with the Cortex-M DSP kernels for each pixel stride
    (input channels · Q) in ``strides`` that LDRD reaches (the others take the C kernels)."""
    reach = [sb for sb in strides if sb in DSP_STRIDES]

    def each_stride(m: re.Match) -> str:
        return "".join(m.group(1).replace("{sb}", str(sb)).replace("{qoff}", str(2 * sb - 8)) for sb in reach)

    return _EACH_STRIDE.sub(each_stride, kernel_file(KERNELS_TOP))


def _latent_doc(M: str, split: int) -> str:
    if split == 1:
        return f"/* Latent quantization ({M}_INPUT_SIZE = {M}_LATENT_DIM): z_int8 = clamp(round(z / scale) + zero_point, -128, 127). */"
    return (
        f"/* Split latent ({M}_INPUT_SIZE = 2 x {M}_LATENT_DIM, runtime/latent.py): z_int8[i] = q(z[i]) with\n"
        f" * q(v) = clamp(round(v / scale) + zero_point, -128, 127), then z_int8[{M}_LATENT_DIM + i] =\n"
        f" * q({M}_LATENT_SPLIT * (z[i] - scale * (z_int8[i] - zero_point))): a grid {split} times finer. */"
    )


def _preprocessor_choice(branches: list[tuple[str, str]], default: str) -> str:
    """``#if A`` text ``#elif B`` text ... ``#else`` default ``#endif`` (default alone when there are none)."""
    if not branches:
        return default
    out = "".join(f"#{'if' if i == 0 else 'elif'} {cond}\n{text}" for i, (cond, text) in enumerate(branches))
    return f"{out}#else\n{default}#endif\n"


def grey_table(plan: DecoderPlan) -> tuple[list[int], str]:
    """The 256 grey levels of the output's int8 values, and what they are: the sigmoid of logits (the
    project's decoders end at int8 logits), or the image a final LOGISTIC ([0, 1]) or TANH ([-1, 1]) wrote."""
    if plan.output_op not in ("LOGISTIC", "TANH"):
        return pixel_lut(plan.logits_scale, plan.logits_zp), "round(255 * sigmoid(value))"
    tanh = plan.output_op == "TANH"
    values = np.float32(plan.logits_scale) * (np.arange(-128, 128) - plan.logits_zp).astype(np.float32)
    unit = (values.astype(np.float64) + 1) / 2 if tanh else values.astype(np.float64)
    grey = np.clip(np.round(255 * unit), 0, 255).astype(int).tolist()
    return (
        grey,
        "round(255 * (value + 1) / 2) (a TANH output)" if tanh else "round(255 * value) (a LOGISTIC output)",
    )


def _next_offset(layer, next_zp: int) -> int:
    """What a layer adds to the values it writes for the next layer: -(its input zero point), or 0 when a table
    (the layer's standalone activation) maps the written values afterwards (common.h's table_row16)."""
    return 0 if layer.lut is not None else -next_zp


def _table_array(name: str, lut, next_zp: int | None) -> str:
    """A layer's activation table: int16 ``activation(q) - next_zp`` between layers, int8 ``activation(q)``
    for the logits (``next_zp`` None); nothing without a table."""
    if lut is None:
        return ""
    values = np.asarray(lut, np.int64)
    if next_zp is None:
        return _array("int8_t", name, values)
    return _array("int16_t", name, values - next_zp)


def _table_pass(name: str, lut, row: str, n: int, bits: int) -> str:
    """The call that maps a written row through the layer's table (nothing without one)."""
    return "" if lut is None else f"    table_row{bits}({row}, {n}, {name});\n"


def emit_c(
    plan: DecoderPlan, *, prior_cholesky: np.ndarray | None = None, prior_note: str = ""
) -> tuple[str, str]:
    """(header, source) of the generated decoder. Deterministic: the same plan gives the same bytes."""
    m = c_identifier(plan.name)
    M = m.upper()
    sched = schedule(plan)
    D, N = plan.latent_dim, plan.input_size
    # A split latent's remainder weights derived from the grid points' need not be stored (dense_row.h).
    dense_stored, derived_shift = stored_dense_weights(plan.dense.weights, plan.latent_split)
    OH, OW, OC = plan.out_shape
    L = check_prior(prior_cholesky, D)
    d = plan.dense
    lut, grey_doc = grey_table(plan)
    relaxed = relaxed_eligible(plan)
    shapes = [d.out_shape] + [c.out_shape for c in plan.convs]
    ring_values = [sched.ring_rows[k] * shapes[k][1] * shapes[k][2] for k in range(len(sched.ring_rows))]
    acc_values = 2 * max(c.out_shape[2] for c in plan.convs)
    static_bytes = 2 * sum(ring_values) + 4 * acc_values + N
    provenance = f"{plan.source} (sha256 {plan.source_sha256})" if plan.source else "a TFLite decoder"
    guard = f"VAE_EDGE_{M}_DECODER_H_"
    chol = ", ".join(_float(v) for v in L.reshape(-1))
    header = f"""/* Generated by python -m firmware_sim.codegen from {provenance}, {plan.graph_kind} graph. Do not edit.
 *
 * int8 decoder of {plan.name}, bit-exact with TensorFlow Lite Micro: integer arithmetic only, no malloc,
 * {static_bytes} bytes of static buffers, weights in const arrays ({plan.real_macs} multiply-accumulates per decode).
 *
 *   int8_t logits[{M}_PIXELS];
 *   {m}_decode(z_int8, logits);             // z_int8: {M}_INPUT_SIZE values from {m}_quantize_latent
 *   uint8_t pixels[{M}_PIXELS];
 *   {m}_sample(z_float, pixels);            // quantize z, decode, grey 0..255 (0 = black)
 *
 * Drawing from the prior N(0, S): z = L eps with eps ~ N(0, I) and L = {m}_prior_cholesky (row-major, lower).
 */
#ifndef {guard}
#define {guard}

#include <stdint.h>

/* Input: one int8 latent of {M}_INPUT_SIZE values. Output: int8 logits of an {OH}x{OW}x{OC} image, row-major
 * (row, column, channel). */
#define {M}_INPUT_SIZE {N}
#define {M}_OUTPUT_H {OH}
#define {M}_OUTPUT_W {OW}
#define {M}_OUTPUT_C {OC}
#define {M}_OUTPUT_SIZE {plan.out_size}
#define {M}_LATENT_DIM {D}
#define {M}_IMAGE_ROWS {M}_OUTPUT_H
#define {M}_IMAGE_COLS {M}_OUTPUT_W
#define {M}_PIXELS {M}_OUTPUT_SIZE
{_latent_doc(M, plan.latent_split)}
#define {M}_LATENT_SCALE {_float(plan.latent_scale)}
#define {M}_LATENT_ZERO_POINT ({plan.latent_zp})
#define {M}_LATENT_SPLIT {plan.latent_split}
/* Output: value = scale * (q - zero_point) (a logit unless the graph ends in an activation); grey level =
 * {m}_pixel_lut[q + 128]. */
#define {M}_LOGITS_SCALE {_float(plan.logits_scale)}
#define {M}_LOGITS_ZERO_POINT ({plan.logits_zp})
#define {M}_STATIC_RAM_BYTES {static_bytes}

/* The prior's Cholesky factor L (S = L L^T){(", " + prior_note) if prior_note else ""}. */
extern const float {m}_prior_cholesky[{D * D}];
/* {grey_doc} for q = -128 .. 127. */
extern const uint8_t {m}_pixel_lut[256];

/* Decode one int8 latent into {OH}x{OW}x{OC} int8 logits (row-major). Returns 0. */
int {m}_decode(const int8_t z[{M}_INPUT_SIZE], int8_t logits[{M}_PIXELS]);
/* Quantize a float latent as the model's input expects. */
void {m}_quantize_latent(const float z[{M}_LATENT_DIM], int8_t z_int8[{M}_INPUT_SIZE]);
/* Quantize, decode and map through the pixel table: {plan.out_size} grey levels. */
void {m}_sample(const float z[{M}_LATENT_DIM], uint8_t pixels[{M}_PIXELS]);

#endif /* {guard} */
"""
    parts = [
        f"/* Generated by python -m firmware_sim.codegen from {provenance}, {plan.graph_kind} graph. Do not edit. */\n",
        f'#include "{m}_decoder.h"\n\n#include <string.h>\n',
        f"/* Whether every layer suits conv_row_relaxed (WebAssembly relaxed SIMD, -DVAE_EDGE_RELAXED_DOT). */\n"
        f"#define VAE_EDGE_RELAXED_OK {int(relaxed)}\n",
        f"/* The narrowest integer type that holds the FULLY_CONNECTED biases (dense_row.h). */\n"
        f"#define VAE_EDGE_DENSE_BIAS_T {_smallest_int(d.bias)}\n",
        kernel_source(sorted({c.Q * c.in_shape[2] for c in plan.convs})),
        "\n/* ---- model constants ---- */\n",
        f"const float {m}_prior_cholesky[{D * D}] = {{{chol}}};\n",
        _array("uint8_t", f"{m}_pixel_lut", lut, static=False),
        _table_array("dense_lut", d.lut, plan.convs[0].in_zp),
        _array("int8_t", "dense_w", dense_stored),
        _array(_smallest_int(d.bias), "dense_bias", d.bias),
        "#if VAE_EDGE_REQUANTIZE4 /* dense_sum4's layout of the same weights (WebAssembly SIMD) */\n",
        _array("int16_t", "dense_w16", dense_pairs(d.weights)),
        "#else\n#define dense_w16 ((const int16_t *)0)\n#endif\n",
    ]
    strides = []
    simd_layers = [simd_eligible(c) for c in plan.convs]
    for k, c in enumerate(plan.convs, start=1):
        tap_start, dys, dxs, w_start, ws = [0], [], [], [], []
        offset = 0
        for ph in c.phases:
            dys += [t[0] for t in ph.taps]
            dxs += [t[1] for t in ph.taps]
            tap_start.append(len(dys))
            w_start.append(offset)
            ws.append(
                np.concatenate([pack_weights(ph.weights[:, t : t + 1, :]) for t in range(len(ph.taps))])
            )
            offset += ws[-1].size
        shared = all(
            np.array_equal(getattr(ph, f), getattr(c.phases[0], f))
            for ph in c.phases
            for f in ("bias", "mult", "shift")
        )
        params = c.phases[:1] if shared else c.phases
        if max(abs(v) for v in dys + dxs) > 127 or tap_start[-1] > 127:
            raise UnsupportedOpError("a layer has taps the generator's int8 tap tables cannot hold")
        weight_branches = []
        if relaxed:
            w7, w7_start = relaxed_weights(c)
            weight_branches.append(
                (
                    "VAE_EDGE_RELAXED",
                    _array("int8_t", f"l{k}_w7", w7)
                    + _array("int32_t", f"l{k}_w7_start", w7_start)
                    + f"#define l{k}_w ((const uint32_t *)0) /* conv_row_relaxed reads l{k}_w7 */\n",
                )
            )
        if simd_layers[k - 1]:
            w16, w16_start = simd_weights(c)
            weight_branches.append(
                (
                    "VAE_EDGE_SIMD128",
                    _array("int16_t", f"l{k}_w16", w16)
                    + _array("int32_t", f"l{k}_w16_start", w16_start)
                    + f"#define l{k}_w ((const uint32_t *)0) /* conv_row_simd reads l{k}_w16 */\n",
                )
            )
        words = _preprocessor_choice(weight_branches, _words(f"l{k}_w", np.concatenate(ws)))
        parts += [
            f"\n/* layer {k}: {c.kind}, {c.in_shape} -> {c.out_shape}, {c.P}x{c.P} phases, "
            f"{c.stored_weights} real weights */\n",
            _array("int8_t", f"l{k}_tap_start", tap_start),
            _array("int8_t", f"l{k}_dy", dys),
            _array("int8_t", f"l{k}_dx", dxs),
            _array("int32_t", f"l{k}_w_start", w_start),
            words,
            _array("int32_t", f"l{k}_bias", np.concatenate([ph.bias for ph in params])),
            _array("int32_t", f"l{k}_mult", np.concatenate([ph.mult for ph in params])),
            _array("int8_t", f"l{k}_shift", np.concatenate([ph.shift for ph in params])),
            _table_array(f"l{k}_lut", c.lut, plan.convs[k].in_zp if k < len(plan.convs) else None),
        ]
        strides.append(0 if shared else c.out_shape[2])
    parts.append(
        "\n/* ---- activations: a ring of rows per image; the last layer writes the caller's logits ---- */\n"
    )
    parts.append(f"static int8_t latent[{N}];\n")
    for k, rows in enumerate(sched.ring_rows):
        parts.append(
            f"static int16_t ring{k}[{ring_values[k]}] VAE_EDGE_ALIGN4; /* {rows} rows of {shapes[k][1]}x{shapes[k][2]} */\n"
        )
    acc_decl = f"static int32_t acc[{acc_values}];\n"
    if all(simd_layers):  # the SIMD kernel keeps its sums in registers
        acc_decl = f"#if !VAE_EDGE_SIMD128\n{acc_decl}#endif\n"
    parts.append(f"{acc_decl}static int rows_done[{len(shapes)}];\n")
    parts.append("static int8_t *logits_out;\n")
    for k, c in enumerate(plan.convs, start=1):
        parts.append(
            f"static const conv_layer_t layer{k} = {{{c.in_shape[0]}, {c.in_shape[1]}, {c.in_shape[2]}, "
            f"{sched.ring_rows[k - 1]}, ring{k - 1}, {c.out_shape[1]}, {c.out_shape[2]}, {c.P}, {c.Q}, "
            f"{c.out_zp}, {c.lo}, {c.hi}, {_next_offset(c, plan.convs[k].in_zp if k < len(plan.convs) else 0)}, l{k}_tap_start, l{k}_dy, l{k}_dx, l{k}_w_start, l{k}_w, "
            f"l{k}_bias, l{k}_mult, l{k}_shift, {strides[k - 1]}}};\n"
        )
    dh, dw, dc = d.out_shape
    ring0_row = f"(size_t)(r % {sched.ring_rows[0]}) * {dw * dc}"
    parts.append(
        f"""static const dense_layer_t dense = {{{N}, {dw * dc}, {dc}, {d.in_zp}, {d.mult}, {d.shift}, {d.out_zp}, """
        f"""{d.lo}, {d.hi}, {_next_offset(d, plan.convs[0].in_zp)}, dense_w, dense_bias, dense_w16, {derived_shift}}};

/* Rows of the FULLY_CONNECTED output image ({dh}x{dw}x{dc}) up to row upto, into ring0. */
static void ensure0(int upto) {{
  while (rows_done[0] <= upto) {{
    const int r = rows_done[0];
#if VAE_EDGE_RELAXED
    dense_row_relaxed(&dense, latent, r, (int8_t *)(void *)ring0 + {ring0_row}, {ring_values[0]});
#else
    dense_row(&dense, latent, r, ring0 + {ring0_row});
#endif
{_table_pass("dense_lut", d.lut, f"ring0 + {ring0_row}", dw * dc, 16)}    rows_done[0]++;
  }}
}}
"""
    )
    n = len(plan.convs)
    for k, c in enumerate(plan.convs, start=1):
        need = ", ".join(str(h) for h in sched.need_hi[k - 1])
        oh, ow, oc = c.out_shape
        if k < n:  # the row this layer writes: into its ring (int16), or the caller's logits (int8)
            row, bits = f"ring{k} + (size_t)(r % {sched.ring_rows[k]}) * {ow * oc}", 16
            dest = f"{row}, NULL"
        else:
            row, bits = f"logits_out + (size_t)r * {ow * oc}", 8
            dest = f"NULL, {row}"
        table = _table_pass(f"l{k}_lut", c.lut, row, ow * oc, bits)
        right = uniform_right_shift(c)
        call_branches = []
        if relaxed:
            dest8 = (  # the ring's low plane, its high plane one plane further (ring_values[k] bytes)
                f"(int8_t *)(void *)ring{k} + (size_t)(r % {sched.ring_rows[k]}) * {ow * oc}, {ring_values[k]}"
                if k < n
                else f"logits_out + (size_t)r * {ow * oc}, 0"
            )
            call_branches.append(
                (
                    "VAE_EDGE_RELAXED",
                    f"    conv_row_relaxed(&layer{k}, l{k}_w7, l{k}_w7_start, r, {dest8}, {right});\n",
                )
            )
        if simd_layers[k - 1]:
            call_branches.append(
                (
                    "VAE_EDGE_SIMD128",
                    f"    conv_row_simd(&layer{k}, l{k}_w16, l{k}_w16_start, r, {dest}, {right});\n",
                )
            )
        call = _preprocessor_choice(call_branches, f"    conv_row(&layer{k}, r, {dest}, acc);\n").rstrip("\n")
        parts.append(
            f"""
static void ensure{k}(int upto) {{
  static const int8_t need_hi[{c.P}] = {{{need}}};
  while (rows_done[{k}] <= upto) {{
    const int r = rows_done[{k}];
    const int hi = {c.Q} * (r / {c.P}) + need_hi[r % {c.P}];
    ensure{k - 1}(hi < {c.in_shape[0] - 1} ? hi : {c.in_shape[0] - 1});
{call}
{table}    rows_done[{k}]++;
  }}
}}
"""
        )
    parts.append(
        f"""
int {m}_decode(const int8_t z[{M}_INPUT_SIZE], int8_t logits[{M}_PIXELS]) {{
  memcpy(latent, z, sizeof latent);
  memset(rows_done, 0, sizeof rows_done);
  logits_out = logits;
  ensure{n}({plan.convs[-1].out_shape[0] - 1});
  return 0;
}}

void {m}_quantize_latent(const float z[{M}_LATENT_DIM], int8_t z_int8[{M}_INPUT_SIZE]) {{
  int i;
  for (i = 0; i < {M}_LATENT_DIM; ++i) {{
    z_int8[i] = quantize_input(z[i], {M}_LATENT_SCALE, {M}_LATENT_ZERO_POINT);
#if {M}_LATENT_SPLIT > 1
    {{ /* the remainder past the grid point, times the radix (a power of two: exact) */
      const float hi = (float)(z_int8[i] - {M}_LATENT_ZERO_POINT) * {M}_LATENT_SCALE;
      z_int8[{M}_LATENT_DIM + i] =
          quantize_input((z[i] - hi) * (float){M}_LATENT_SPLIT, {M}_LATENT_SCALE, {M}_LATENT_ZERO_POINT);
    }}
#endif
  }}
}}

void {m}_sample(const float z[{M}_LATENT_DIM], uint8_t pixels[{M}_PIXELS]) {{
  int8_t zq[{M}_INPUT_SIZE];
  int i;
  {m}_quantize_latent(z, zq);
  {m}_decode(zq, (int8_t *)pixels); /* logits written in place, then mapped to grey levels */
  for (i = 0; i < {M}_PIXELS; ++i) pixels[i] = {m}_pixel_lut[(int8_t)pixels[i] + 128];
}}
"""
    )
    return header, "".join(parts)
