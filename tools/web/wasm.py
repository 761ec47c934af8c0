"""Compile a model's decoders to WebAssembly for the browser: the int8 decoder from firmware_sim's generated C
(bit-exact with TFLite Micro), the float32 decoder from C emitted here. Needs clang with the wasm32 target and
wasm-ld (Debian: ``apt-get install clang lld``); no Emscripten, no libc.

    from tools.web.wasm import build_wasm_decoders
    records = build_wasm_decoders(manifest, out_dir)   # {"int8", "int8_relaxed", "float32": WasmDecoder}

Each module exports the same four functions, so the page drives both alike:

    vae_edge_latent_dim() -> int        vae_edge_input() -> float*   (write the latent here)
    vae_edge_decode() -> 0              vae_edge_output() -> float*  (784 logits, row-major 28x28)

The page applies the sigmoid to the logits. int8: the float latent is quantized by the generated
``<model>_quantize_latent`` (TFLite's QUANTIZE), decoded in integers, and the int8 logits dequantized as
``scale * (q - zero_point)`` in float32, as the Python runtime dequantizes. The int8 module also exports
``vae_edge_output_int8() -> int8_t*`` (the 784 int8 logits) and ``vae_edge_dequantized() -> float*`` (the float
logit of each int8 value, -128 .. 127), so the page takes the sigmoid of those 256 once and looks each decode's
pixels up: the same values as the sigmoid of every logit, without 784 exp() a decode. float32: the sub-pixel float32
``.tflite`` graph (FULLY_CONNECTED, RESHAPE, PAD, CONV_2D, DEPTH_TO_SPACE) lowered to calls of
``wasm/float_kernels.h``; its LOGISTIC is left to the page (it commutes with the layout ops after it).

int8_relaxed (``decoder_int8_relaxed.wasm``, when :func:`firmware_sim.codegen.relaxed_eligible`): the same
generated C built with ``-DVAE_EDGE_RELAXED_DOT`` for engines with WebAssembly relaxed SIMD (Chromium >= 114):
``conv_row_relaxed`` does four multiply-accumulates per lane with ``i32x4.relaxed_dot_i8x16_i7x16_add_s``, its
7-bit operand always in [0, 127] so that every engine computes the same integers (the same logits as the int8
module, TFLite Micro's). clang 14 has no builtin for that instruction: the C calls an exact SIMD128 stand-in,
exported, and :func:`patch_relaxed_dot` rewrites each call into the instruction. The page validates a tiny
relaxed module and loads this one where it validates, the int8 module elsewhere.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import VaeEdgeError
from runtime.manifest import Manifest

WASM_DIR = Path(__file__).resolve().parent / "wasm"
EXPORTS = (
    "vae_edge_latent_dim",
    "vae_edge_output_size",
    "vae_edge_input",
    "vae_edge_output",
    "vae_edge_decode",
)
# The int8 module's two more: its int8 logits, and the float logit of each int8 value (q = -128 .. 127).
INT8_EXPORTS = ("vae_edge_output_int8", "vae_edge_dequantized")
CFLAGS = ("--target=wasm32", "-O3", "-msimd128", "-nostdlib", "-ffreestanding", "-std=c99")
# The int8 module for engines with WebAssembly relaxed SIMD (the page validates a tiny module to choose).
RELAXED = "int8_relaxed"
# Ops after which the float graph may only rearrange values (so its LOGISTIC can move to the page).
LAYOUT_OPS = ("RESHAPE", "DEPTH_TO_SPACE")


@dataclass(frozen=True)
class WasmDecoder:
    precision: str
    path: Path
    sha256: str
    size_bytes: int
    source: str  # the export's .tflite it was compiled from
    source_sha256: str
    # "logits" (the page applies the sigmoid), "tanh" (the page applies tanh) or "image" (the values as they are)
    output: str

    def record(self) -> dict:
        """site.json's record of this decoder (the page checks the sha256 before it compiles the module)."""
        return {
            "path": self.path.name,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "io": "float",
            "output": self.output,
            "from": {"path": self.source, "sha256": self.source_sha256},
        }


@functools.cache
def toolchain() -> str:
    """The clang that can build wasm32 modules (and link them with wasm-ld), or a one-line error naming the fix."""
    clang = shutil.which("clang")
    fix = "install clang and lld (Debian: apt-get install --no-install-recommends clang lld)"
    if clang is None or shutil.which("wasm-ld") is None:
        raise VaeEdgeError(f"building WebAssembly decoders needs clang and wasm-ld; {fix}")
    targets = subprocess.run([clang, "--print-targets"], capture_output=True, text=True).stdout
    if "wasm32" not in targets:
        raise VaeEdgeError(f"{clang} has no wasm32 target; {fix}")
    return clang


def compile_module(
    sources: list[Path],
    out: Path,
    include: list[Path],
    exports: tuple[str, ...] = EXPORTS,
    defines: tuple[str, ...] = (),
) -> Path:
    """Compile and link C sources into one freestanding WebAssembly module exporting ``exports``."""
    cmd = [toolchain(), *CFLAGS, *(f"-D{d}" for d in defines), f"-I{WASM_DIR}"]
    cmd += [*(f"-I{d}" for d in include), "-o", str(out)]
    cmd += ["-Wl,--no-entry", "-Wl,--strip-all", *(f"-Wl,--export={name}" for name in exports)]
    done = subprocess.run(
        [*cmd, *map(str, sources), str(WASM_DIR / "libc.c")], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise VaeEdgeError(f"clang could not build {out.name}: {done.stderr.strip().splitlines()[0]}")
    return out


RELAXED_DOT_STUB = "vae_edge_relaxed_dot"
RELAXED_DOT_OPCODE = b"\xfd\x93\x02"  # i32x4.relaxed_dot_i8x16_i7x16_add_s (0xfd 0x113)
# SIMD (0xfd) opcodes by immediate: a memarg, a memarg and a lane, one lane byte, 16 bytes
_SIMD_MEMARG = {*range(0, 12), 92, 93}
_SIMD_MEMARG_LANE = set(range(84, 92))
_SIMD_LANE = set(range(21, 35))
_SIMD_BYTES16 = {12, 13}


def _leb(data: bytes, i: int) -> tuple[int, int]:
    """An unsigned LEB128 at data[i]: (value, the index after it)."""
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def _uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        b, value = value & 0x7F, value >> 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _skip_leb(data: bytes, i: int) -> int:
    while data[i] & 0x80:
        i += 1
    return i + 1


def _patch_body(body: bytes, stub: int) -> tuple[bytes, int]:
    """A function body with every ``call stub`` replaced by the relaxed dot instruction, and how many."""
    out = bytearray()
    i = 0
    groups, i = _leb(body, i)
    for _ in range(groups):
        i = _skip_leb(body, i) + 1  # count, value type
    out += body[:i]
    calls = 0
    while i < len(body):
        start, op = i, body[i]
        i += 1
        if op in (0x02, 0x03, 0x04):  # block type: one byte (empty or a value type) or a type index (s33)
            i = i + 1 if body[i] in (0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F) else _skip_leb(body, i)
        elif op in (0x0C, 0x0D, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x3F, 0x40, 0x41, 0x42, 0xD2):
            i = _skip_leb(body, i)
        elif op == 0x0E:  # br_table
            n, i = _leb(body, i)
            for _ in range(n + 1):
                i = _skip_leb(body, i)
        elif op == 0x10:
            callee, i = _leb(body, i)
            if callee == stub:
                out += RELAXED_DOT_OPCODE
                calls += 1
                continue
        elif op == 0x11:  # call_indirect: type, table
            i = _skip_leb(body, _skip_leb(body, i))
        elif op == 0x1C:  # select with types
            n, i = _leb(body, i)
            i += n
        elif 0x28 <= op <= 0x3E:  # memarg: align, offset
            i = _skip_leb(body, _skip_leb(body, i))
        elif op == 0x43:
            i += 4
        elif op == 0x44:
            i += 8
        elif op == 0xD0:
            i += 1
        elif op == 0xFC:
            sub, i = _leb(body, i)
            for _ in range({8: 2, 9: 1, 10: 2, 11: 1, 12: 2, 13: 1, 14: 2, 15: 1, 16: 1, 17: 1}.get(sub, 0)):
                i = _skip_leb(body, i)
        elif op == 0xFD:
            sub, i = _leb(body, i)
            if sub in _SIMD_MEMARG or sub in _SIMD_MEMARG_LANE:
                i = _skip_leb(body, _skip_leb(body, i)) + (sub in _SIMD_MEMARG_LANE)
            elif sub in _SIMD_LANE:
                i += 1
            elif sub in _SIMD_BYTES16:
                i += 16
        elif not (op <= 0x01 or op in (0x05, 0x0B, 0x0F, 0x1A, 0x1B, 0xD1) or 0x45 <= op <= 0xC4):
            raise VaeEdgeError(
                f"opcode 0x{op:02x} at byte {start} of a function body: not one the patcher reads"
            )
        out += body[start:i]
    return bytes(out), calls


def patch_relaxed_dot(module: bytes) -> tuple[bytes, int]:
    """``module`` with each call of the exported stub function replaced by i32x4.relaxed_dot_i8x16_i7x16_add_s
    (the stub's parameters and result are the instruction's operands and result) and the stub's export removed;
    and how many calls were replaced."""
    if module[:8] != b"\0asm\1\0\0\0":
        raise VaeEdgeError("not a WebAssembly module")
    sections, i = [], 8
    while i < len(module):
        sid = module[i]
        size, j = _leb(module, i + 1)
        sections.append([sid, module[j : j + size]])
        i = j + size
    stub, calls = None, 0
    for sec in sections:
        if sec[0] == 7:  # exports: find the stub's function index, drop its entry
            data, kept = sec[1], []
            n, k = _leb(data, 0)
            for _ in range(n):
                start = k
                length, k = _leb(data, k)
                name = data[k : k + length].decode()
                kind = data[k + length]
                index, k = _leb(data, k + length + 1)
                if name == RELAXED_DOT_STUB and kind == 0:
                    stub = index
                else:
                    kept.append(data[start:k])
            sec[1] = _uleb(len(kept)) + b"".join(kept)
    if stub is None:
        raise VaeEdgeError(f"the module does not export {RELAXED_DOT_STUB}")
    for sec in sections:
        if sec[0] == 10:  # code
            data, bodies = sec[1], []
            n, k = _leb(data, 0)
            for _ in range(n):
                size, k = _leb(data, k)
                body, count = _patch_body(data[k : k + size], stub)
                bodies.append(_uleb(len(body)) + body)
                calls += count
                k += size
            sec[1] = _uleb(n) + b"".join(bodies)
    out = bytearray(module[:8])
    for sid, data in sections:
        out += bytes([sid]) + _uleb(len(data)) + data
    return bytes(out), calls


def build_relaxed_module(sources: list[Path], out: Path, include: list[Path], *, patch: bool = True) -> Path:
    """The int8 module for engines with relaxed SIMD: the generated C built with ``-DVAE_EDGE_RELAXED_DOT``
    (conv_row_relaxed), then each call of its exact stand-in for the relaxed dot product replaced by the
    instruction. Refuses a module where nothing was replaced. ``patch=False``: the stand-in's calls are kept
    (the same integers in any WebAssembly SIMD engine; the tests check the kernel's arithmetic with it)."""
    stub = out.with_name(out.name + ".stub")
    try:
        compile_module(
            sources, stub, include, EXPORTS + INT8_EXPORTS + (RELAXED_DOT_STUB,), ("VAE_EDGE_RELAXED_DOT",)
        )
        if not patch:
            out.write_bytes(stub.read_bytes())
            return out
        patched, calls = patch_relaxed_dot(stub.read_bytes())
    finally:
        stub.unlink(missing_ok=True)
    if calls == 0:
        raise VaeEdgeError(f"{out.name}: the generated C made no relaxed dot products; nothing to build")
    out.write_bytes(patched)
    return out


def _c_float(v: float) -> str:
    """A float32 literal that reads back exactly: 9 significant digits, and a point or an exponent before f."""
    t = f"{float(np.float32(v)):.9g}"
    return t + ("f" if any(ch in t for ch in ".e") else ".0f")


def _c_floats(name: str, values: np.ndarray) -> str:
    flat = np.asarray(values, np.float32).ravel()
    body = ",".join(_c_float(v) for v in flat)
    return f"static const float {name}[{flat.size}] = {{{body}}};\n"


# TFLite's fused activations as float_kernels.h numbers them.
FUSED_ACTIVATIONS = {"NONE": 0, "RELU": 1, "RELU6": 2, "RELU_N1_TO_1": 3}
# Standalone activation ops the float module computes (LOGISTIC and TANH only at the end, by the page).
STANDALONE = ("LEAKY_RELU", "RELU", "RELU6")


# What a float module's output holds, by the final activation left to the page (tools/web/site/backends.js).
FLOAT_OUTPUTS = {"LOGISTIC": "logits", "TANH": "tanh", "": "image"}


def emit_float_decoder(tflite: Path) -> tuple[str, str]:
    """C for the float32 decoder graph (one static buffer per activation, constant weights, kernel calls), and
    what its output holds (:data:`FLOAT_OUTPUTS`).

    Takes a (1, d) latent through FULLY_CONNECTED, RESHAPE, PAD, CONV_2D, TRANSPOSE_CONV and DEPTH_TO_SPACE
    (the ops firmware_sim's generator takes) to an output of any shape; a final LOGISTIC or TANH is left to the
    page. Anything else is one line naming the op."""
    from firmware_sim.graph import load_graph, operands
    from firmware_sim.reference import same_padding

    g = load_graph(tflite)
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise VaeEdgeError(f"{tflite.name}: expected one input and one output")
    (z,), (out,) = g.inputs, g.outputs
    shape = {t.index: t.shape for t in g.tensors}
    if len(shape[z]) != 2 or shape[z][0] != 1 or shape[out][0] != 1:
        raise VaeEdgeError(f"{tflite.name}: expected a batch-1 decoder from a (1, d) latent")
    n_out = int(np.prod(shape[out]))
    buffer = {z: "z_in"}
    consts, body, buffers = [], [], []
    kinds = [op.kind for op in g.ops]
    final = ""  # the activation left to the page

    def dest(t: int) -> str:
        if t == out:
            return "logits_out"
        buffer[t] = f"t{t}"
        buffers.append(f"static float t{t}[{int(np.prod(shape[t]))}];\n")
        return buffer[t]

    def const(t: int, values: np.ndarray) -> str:
        consts.append(_c_floats(f"c{t}", values))
        return f"c{t}"

    def check_channels(i: int, op, oc: int) -> None:
        if oc > 512:
            raise VaeEdgeError(
                f"{tflite.name}: op {i} {op.kind} has {oc} output channels (the kernel holds 512)"
            )

    for i, op in enumerate(g.ops):
        activation = op.options.get("activation", "NONE")
        if activation not in FUSED_ACTIVATIONS:
            raise VaeEdgeError(f"{tflite.name}: op {i} {op.kind} has activation {activation}")
        act = FUSED_ACTIVATIONS[activation]
        ops = operands(op)  # TRANSPOSE_CONV's too (its x is its third input)
        x, weights, bias = ops.x, ops.weights, ops.bias
        if x not in buffer:
            raise VaeEdgeError(f"{tflite.name}: op {i} {op.kind} reads a tensor no earlier op wrote")
        src = buffer[x]
        if op.kind in ("RESHAPE", "LOGISTIC", "TANH"):
            if op.kind != "RESHAPE":
                if any(k not in LAYOUT_OPS for k in kinds[i + 1 :]):
                    raise VaeEdgeError(
                        f"{tflite.name}: {op.kind} is followed by arithmetic; the page cannot take it"
                    )
                final = op.kind
            if op.outputs[0] == out:
                body.append(f"  for (int i = 0; i < {n_out}; ++i) logits_out[i] = {src}[i];\n")
            else:
                buffer[op.outputs[0]] = src
            continue
        if op.kind in ("FULLY_CONNECTED", "CONV_2D") and bias < 0:
            raise VaeEdgeError(f"{tflite.name}: op {i} {op.kind} has no bias; re-export the decoder")
        y = dest(op.outputs[0])
        if op.kind == "FULLY_CONNECTED":
            w, b = g.tensors[weights].data, g.tensors[bias].data
            n, d = w.shape
            body.append(f"  dense({src}, {d}, {const(weights, w.T)}, {const(bias, b)}, {n}, {act}, {y});\n")
        elif op.kind == "PAD":
            p = g.tensors[op.inputs[1]].data
            _, h, w_, c = shape[x]
            body.append(f"  pad({src}, {h}, {w_}, {c}, {p[1][0]}, {p[1][1]}, {p[2][0]}, {p[2][1]}, {y});\n")
        elif op.kind in ("CONV_2D", "TRANSPOSE_CONV"):
            if op.options.get("dilationHFactor", 1) != 1 or op.options.get("dilationWFactor", 1) != 1:
                raise VaeEdgeError(f"{tflite.name}: op {i} {op.kind} is dilated; not supported")
            sh, sw = int(op.options.get("strideH", 1)), int(op.options.get("strideW", 1))
            k = g.tensors[weights].data
            oc, kh, kw, ic = k.shape
            _, h, w_, c = shape[x]
            _, oh, ow, _ = shape[op.outputs[0]]
            check_channels(i, op, oc)
            same = op.options.get("padding") == "SAME"  # TFLite's SAME: the smaller half before
            kernel = const(weights, k.transpose(1, 2, 3, 0))
            b = const(bias, g.tensors[bias].data) if bias >= 0 else "0"
            if op.kind == "CONV_2D":
                top = same_padding(sh, h, kh, oh) if same else 0
                left = same_padding(sw, w_, kw, ow) if same else 0
            else:  # as TFLite's transpose_conv.cc and firmware_sim.reference pad the output
                top = same_padding(sh, oh, kh, -(-oh // sh)) if same else 0
                left = same_padding(sw, ow, kw, -(-ow // sw)) if same else 0
            transposed = int(op.kind == "TRANSPOSE_CONV")
            body.append(
                f"  convolve({src}, {h}, {w_}, {c}, {kernel}, {b}, {kh}, {kw}, {sh}, {sw}, {top}, {left}, "
                f"{oh}, {ow}, {oc}, {act}, {transposed}, {y});\n"
            )
        elif op.kind in STANDALONE:
            n = int(np.prod(shape[x]))
            if op.kind == "LEAKY_RELU":
                body.append(f"  leaky_relu({src}, {n}, {_c_float(op.options['alpha'])}, {y});\n")
            else:
                body.append(f"  activation({src}, {n}, {FUSED_ACTIVATIONS[op.kind]}, {y});\n")
        elif op.kind == "DEPTH_TO_SPACE":
            _, h, w_, c = shape[x]
            body.append(f"  depth_to_space({src}, {h}, {w_}, {c}, {op.options['blockSize']}, {y});\n")
        else:
            raise VaeEdgeError(
                f"{tflite.name}: op {i} {op.kind} is not supported by the float WebAssembly decoder "
                "(it takes FULLY_CONNECTED, RESHAPE, PAD, CONV_2D, TRANSPOSE_CONV, DEPTH_TO_SPACE, LEAKY_RELU, "
                "RELU, RELU6 and a final LOGISTIC or TANH); build the site with --runtime onnxruntime-web"
            )
    if out not in buffer and not any(op.outputs[0] == out for op in g.ops):
        raise VaeEdgeError(f"{tflite.name}: no op writes the output")
    d = shape[z][1]
    source = (
        f"/* Generated by tools/web/wasm.py from {tflite.name}. Do not edit. */\n"
        '#include "float_kernels.h"\n\n'
        + "".join(consts)
        + f"static float z_in[{d}];\nstatic float logits_out[{n_out}];\n"
        + "".join(buffers)
        + f"\nint vae_edge_latent_dim(void) {{ return {d}; }}\n"
        f"int vae_edge_output_size(void) {{ return {n_out}; }}\n"
        "float *vae_edge_input(void) { return z_in; }\n"
        "float *vae_edge_output(void) { return logits_out; }\n"
        "int vae_edge_decode(void) {\n" + "".join(body) + "  return 0;\n}\n"
    )
    return source, FLOAT_OUTPUTS[final]


def int8_glue(model: str) -> str:
    """The four exports around firmware_sim's generated ``<model>_decode``."""
    from firmware_sim.codegen import c_identifier

    m = c_identifier(model)
    u = m.upper()
    return f"""/* Generated by tools/web/wasm.py: the browser's interface to {m}_decoder.c. Do not edit. */
#include "{m}_decoder.h"

static float z_in[{u}_LATENT_DIM];
static float logits_out[{u}_PIXELS];
static int8_t z_q[{u}_INPUT_SIZE];
static int8_t logits_q[{u}_PIXELS];

static float dequantized[256];

static float dequantize(int8_t q) {{ return {u}_LOGITS_SCALE * (float)(q - {u}_LOGITS_ZERO_POINT); }}

int vae_edge_latent_dim(void) {{ return {u}_LATENT_DIM; }}
int vae_edge_output_size(void) {{ return {u}_PIXELS; }}
float *vae_edge_input(void) {{ return z_in; }}
float *vae_edge_output(void) {{ return logits_out; }}
int8_t *vae_edge_output_int8(void) {{ return logits_q; }}
float *vae_edge_dequantized(void) {{
  for (int q = -128; q < 128; ++q) dequantized[q + 128] = dequantize((int8_t)q);
  return dequantized;
}}
int vae_edge_decode(void) {{
  {m}_quantize_latent(z_in, z_q);
  {m}_decode(z_q, logits_q);
  for (int i = 0; i < {u}_PIXELS; ++i) logits_out[i] = dequantize(logits_q[i]);
  return 0;
}}
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_entries(manifest: Manifest) -> dict[str, dict]:
    """The export's decoders the modules are compiled from: the batch-1 int8 (int8 I/O, the one firmware_sim
    generates C from) and float32 ``.tflite`` files of the deployment graph (the sub-pixel rewrite of the
    project's models; the one graph of a decoder brought with ``python -m export --decoder``)."""
    graph = manifest.deployment_graph
    return {
        "int8": manifest.select(
            role="decoder", format="tflite", precision="int8", io="int8", batch=1, graph=graph
        ),
        "float32": manifest.select(
            role="decoder", format="tflite", precision="float32", batch=1, graph=graph
        ),
    }


def module_output(manifest: Manifest) -> str:
    """What the modules' ``vae_edge_output`` holds: ``logits`` for a sigmoid decoder (the page applies the
    sigmoid), ``image`` otherwise (a tanh output, whose int8 graph ends in TANH, or a linear one: the values as
    they are)."""
    return "logits" if manifest.output_activation == "sigmoid" else "image"


def quantize_latents(graph, z: np.ndarray) -> np.ndarray:
    """Float latents as the int8 inputs of ``graph`` (a firmware_sim Graph), as the module's
    ``<model>_quantize_latent`` makes them: TFLite's QUANTIZE (float32 divide, round half away from zero, zero
    point, clamp) of each latent, or of its grid point and remainder for a split latent (runtime/latent.py)."""
    from firmware_sim.codegen.lowering import latent_split_of
    from runtime.latent import LatentSplit, quantize_float32

    tin = graph.tensors[graph.inputs[0]]
    scale, zero_point = float(tin.scale[0]), int(tin.zero_point[0])
    radix = latent_split_of(graph, int(tin.shape[1]))
    if radix > 1:
        return LatentSplit(radix, scale, zero_point).quantize(z)
    return quantize_float32(z, scale, zero_point)


def tflm_pixels(tflite: Path, z: np.ndarray, output: str = "logits") -> tuple[np.ndarray, float]:
    """Pixels of an int8-I/O decoder computed with TFLite Micro's arithmetic (firmware_sim's numpy reference,
    bit-exact with TFLM), as the page makes them from the module's output (:func:`module_output`): the sigmoid
    of ``logits`` taken as the page takes it, an ``image`` as it is; and the int8 output's step (scale)."""
    from firmware_sim.graph import load_graph
    from firmware_sim.reference import IntegerReference

    g = load_graph(tflite)
    reference = IntegerReference(g)
    tout = g.tensors[g.outputs[0]]
    s_out, zp_out = np.float32(tout.scale[0]), int(tout.zero_point[0])
    pixels = []
    for q in quantize_latents(g, z):
        out = reference.run(q[None]).astype(np.int32).ravel()
        values = (s_out * (out - zp_out).astype(np.float32)).astype(np.float64)
        if output == "logits":
            values = 1.0 / (1.0 + np.exp(-values))
        pixels.append(values.astype(np.float32))
    return np.stack(pixels), float(s_out)


def build_wasm_decoders(manifest: Manifest, out_dir: Path) -> dict[str, WasmDecoder]:
    """Compile ``manifest``'s int8 and float32 sub-pixel decoders into ``out_dir``/decoder_{int8,float32}.wasm."""
    from firmware_sim.codegen import generate, relaxed_eligible

    toolchain()
    out_dir = Path(out_dir)
    output = module_output(manifest)
    sources = source_entries(manifest)
    graph = manifest.deployment_graph
    made = {}
    with tempfile.TemporaryDirectory(prefix="vae-edge-wasm-") as tmp:
        tmp = Path(tmp)
        generated = generate(source=manifest.folder, out=tmp / "int8", graph=graph, name=manifest.model)
        glue = tmp / "int8" / "browser.c"
        glue.write_text(int8_glue(manifest.model))
        float_c = tmp / "float32.c"
        float_source, float_output = emit_float_decoder(manifest.verify(sources["float32"]))
        float_c.write_text(float_source)
        int8_sources, int8_include = [generated.source, glue], [tmp / "int8"]
        built = {
            "int8": compile_module(
                int8_sources, out_dir / "decoder_int8.wasm", int8_include, EXPORTS + INT8_EXPORTS
            ),
            "float32": compile_module([float_c], out_dir / "decoder_float32.wasm", []),
        }
        if relaxed_eligible(generated.plan):
            built[RELAXED] = build_relaxed_module(
                int8_sources, out_dir / "decoder_int8_relaxed.wasm", int8_include
            )
    for precision, path in built.items():
        entry = sources["int8" if precision == RELAXED else precision]
        made[precision] = WasmDecoder(
            precision,
            path,
            _sha256(path),
            path.stat().st_size,
            entry["path"],
            entry["sha256"],
            float_output if precision == "float32" else output,
        )
    return made
