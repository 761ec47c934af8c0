"""Compile a model's decoders to WebAssembly for the browser: the int8 decoder from firmware_sim's generated C
(bit-exact with TFLite Micro), the float32 decoder from C emitted here. Needs clang with the wasm32 target and
wasm-ld (Debian: ``apt-get install clang lld``); no Emscripten, no libc.

    from tools.web.wasm import build_wasm_decoders
    records = build_wasm_decoders(manifest, out_dir)   # {"int8": WasmDecoder, "float32": WasmDecoder}

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
EXPORTS = ("vae_edge_latent_dim", "vae_edge_input", "vae_edge_output", "vae_edge_decode")
# The int8 module's two more: its int8 logits, and the float logit of each int8 value (q = -128 .. 127).
INT8_EXPORTS = ("vae_edge_output_int8", "vae_edge_dequantized")
CFLAGS = ("--target=wasm32", "-O3", "-msimd128", "-nostdlib", "-ffreestanding", "-std=c99")
PIXELS = 28 * 28
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

    def record(self) -> dict:
        """site.json's record of this decoder (the page checks the sha256 before it compiles the module)."""
        return {
            "path": self.path.name,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "io": "float",
            "output": "logits",
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
    sources: list[Path], out: Path, include: list[Path], exports: tuple[str, ...] = EXPORTS
) -> Path:
    """Compile and link C sources into one freestanding WebAssembly module exporting ``exports``."""
    cmd = [toolchain(), *CFLAGS, f"-I{WASM_DIR}", *(f"-I{d}" for d in include), "-o", str(out)]
    cmd += ["-Wl,--no-entry", "-Wl,--strip-all", *(f"-Wl,--export={name}" for name in exports)]
    done = subprocess.run(
        [*cmd, *map(str, sources), str(WASM_DIR / "libc.c")], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise VaeEdgeError(f"clang could not build {out.name}: {done.stderr.strip().splitlines()[0]}")
    return out


def _c_floats(name: str, values: np.ndarray) -> str:
    flat = np.asarray(values, np.float32).ravel()
    # 9 significant digits: every float32 reads back exactly; a literal needs a point or an exponent before f
    texts = (f"{float(v):.9g}" for v in flat)
    body = ",".join(t + ("f" if any(ch in t for ch in ".e") else ".0f") for t in texts)
    return f"static const float {name}[{flat.size}] = {{{body}}};\n"


def emit_float_decoder(tflite: Path) -> str:
    """C for the float32 decoder graph: one static buffer per activation, constant weights, kernel calls."""
    from firmware_sim.graph import load_graph

    g = load_graph(tflite)
    (z,), (out,) = g.inputs, g.outputs
    shape = {t.index: t.shape for t in g.tensors}
    if shape[out][1:] not in ((28, 28, 1), (PIXELS,)) or len(shape[z]) != 2 or shape[z][0] != 1:
        raise VaeEdgeError(f"{tflite.name}: expected a batch-1 decoder from (1, d) to 28x28 pixels")
    buffer = {z: "z_in"}
    consts, body, buffers = [], [], []
    kinds = [op.kind for op in g.ops]

    def dest(t: int) -> str:
        if t == out:
            return "logits_out"
        buffer[t] = f"t{t}"
        buffers.append(f"static float t{t}[{int(np.prod(shape[t]))}];\n")
        return buffer[t]

    def const(t: int, values: np.ndarray) -> str:
        consts.append(_c_floats(f"c{t}", values))
        return f"c{t}"

    for i, op in enumerate(g.ops):
        relu = int(op.options.get("activation", "NONE") == "RELU")
        if op.options.get("activation", "NONE") not in ("NONE", "RELU"):
            raise VaeEdgeError(f"{tflite.name}: op {i} {op.kind} has activation {op.options['activation']}")
        x = op.inputs[0]
        src = buffer[x]
        if op.kind in ("RESHAPE", "LOGISTIC"):
            if op.kind == "LOGISTIC" and any(k not in LAYOUT_OPS for k in kinds[i + 1 :]):
                raise VaeEdgeError(
                    f"{tflite.name}: LOGISTIC is followed by arithmetic; the page cannot take it"
                )
            if op.outputs[0] == out:
                n = int(np.prod(shape[out]))
                body.append(f"  for (int i = 0; i < {n}; ++i) logits_out[i] = {src}[i];\n")
            else:
                buffer[op.outputs[0]] = src
            continue
        y = dest(op.outputs[0])
        if op.kind == "FULLY_CONNECTED":
            w, b = (g.tensors[k].data for k in op.inputs[1:3])
            n, d = w.shape
            body.append(
                f"  dense({src}, {d}, {const(op.inputs[1], w.T)}, {const(op.inputs[2], b)}, {n}, {relu}, {y});\n"
            )
        elif op.kind == "PAD":
            p = g.tensors[op.inputs[1]].data
            _, h, w_, c = shape[x]
            body.append(f"  pad({src}, {h}, {w_}, {c}, {p[1][0]}, {p[1][1]}, {p[2][0]}, {p[2][1]}, {y});\n")
        elif op.kind == "CONV_2D":
            if (
                (op.options.get("strideH"), op.options.get("strideW")) != (1, 1)
                or op.options.get("dilationHFactor", 1) != 1
                or op.options.get("dilationWFactor", 1) != 1
            ):
                raise VaeEdgeError(f"{tflite.name}: op {i} CONV_2D is strided or dilated; not supported")
            k, b = (g.tensors[j].data for j in op.inputs[1:3])
            oc, kh, kw, ic = k.shape
            _, h, w_, c = shape[x]
            _, oh, ow, _ = shape[op.outputs[0]]
            if oc > 512:
                raise VaeEdgeError(f"{tflite.name}: op {i} has {oc} output channels (the kernel holds 512)")
            top = max((oh - 1) + kh - h, 0) // 2 if op.options.get("padding") == "SAME" else 0
            left = max((ow - 1) + kw - w_, 0) // 2 if op.options.get("padding") == "SAME" else 0
            kernel = const(op.inputs[1], k.transpose(1, 2, 3, 0))
            body.append(
                f"  conv2d({src}, {h}, {w_}, {c}, {kernel}, {const(op.inputs[2], b)}, {kh}, {kw}, {top}, {left}, "
                f"{oh}, {ow}, {oc}, {relu}, {y});\n"
            )
        elif op.kind == "DEPTH_TO_SPACE":
            _, h, w_, c = shape[x]
            body.append(f"  depth_to_space({src}, {h}, {w_}, {c}, {op.options['blockSize']}, {y});\n")
        else:
            raise VaeEdgeError(
                f"{tflite.name}: op {i} {op.kind} is not supported by the float WebAssembly decoder"
            )
    d = shape[z][1]
    return (
        f"/* Generated by tools/web/wasm.py from {tflite.name}. Do not edit. */\n"
        '#include "float_kernels.h"\n\n'
        + "".join(consts)
        + f"static float z_in[{d}];\nstatic float logits_out[{PIXELS}];\n"
        + "".join(buffers)
        + f"\nint vae_edge_latent_dim(void) {{ return {d}; }}\n"
        "float *vae_edge_input(void) { return z_in; }\n"
        "float *vae_edge_output(void) { return logits_out; }\n"
        "int vae_edge_decode(void) {\n" + "".join(body) + "  return 0;\n}\n"
    )


def int8_glue(model: str) -> str:
    """The four exports around firmware_sim's generated ``<model>_decode``."""
    from firmware_sim.codegen import c_identifier

    m = c_identifier(model)
    u = m.upper()
    return f"""/* Generated by tools/web/wasm.py: the browser's interface to {m}_decoder.c. Do not edit. */
#include "{m}_decoder.h"

static float z_in[{u}_LATENT_DIM];
static float logits_out[{u}_PIXELS];
static int8_t z_q[{u}_LATENT_DIM];
static int8_t logits_q[{u}_PIXELS];

static float dequantized[256];

static float dequantize(int8_t q) {{ return {u}_LOGITS_SCALE * (float)(q - {u}_LOGITS_ZERO_POINT); }}

int vae_edge_latent_dim(void) {{ return {u}_LATENT_DIM; }}
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
    """The export's decoders the modules are compiled from: the batch-1 sub-pixel int8 (int8 I/O, the one
    firmware_sim generates C from) and float32 ``.tflite`` files."""
    return {
        "int8": manifest.select(
            role="decoder", format="tflite", precision="int8", io="int8", batch=1, graph="subpixel"
        ),
        "float32": manifest.select(
            role="decoder", format="tflite", precision="float32", batch=1, graph="subpixel"
        ),
    }


def quantize_latents(z: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """TFLite's QUANTIZE of float latents to int8, as the module's ``<model>_quantize_latent`` does it: float32
    divide, round half away from zero, zero point, clamp."""
    v = np.asarray(z, np.float32) / np.float32(scale)
    return np.clip(np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)) + zero_point, -128, 127).astype(np.int8)


def tflm_pixels(tflite: Path, z: np.ndarray) -> tuple[np.ndarray, float]:
    """Pixels of an int8-I/O decoder computed with TFLite Micro's arithmetic (firmware_sim's numpy reference,
    bit-exact with TFLM), the sigmoid taken as the page takes it; and the int8 logits' step (scale)."""
    from firmware_sim.graph import load_graph
    from firmware_sim.reference import IntegerReference

    g = load_graph(tflite)
    reference = IntegerReference(g)
    tin, tout = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    s_in, zp_in = np.float32(tin.scale[0]), int(tin.zero_point[0])
    s_out, zp_out = np.float32(tout.scale[0]), int(tout.zero_point[0])
    pixels = []
    for q in quantize_latents(z, s_in, zp_in):
        out = reference.run(q[None]).astype(np.int32).ravel()
        logits = (s_out * (out - zp_out).astype(np.float32)).astype(np.float64)
        pixels.append((1.0 / (1.0 + np.exp(-logits))).astype(np.float32))
    return np.stack(pixels), float(s_out)


def build_wasm_decoders(manifest: Manifest, out_dir: Path) -> dict[str, WasmDecoder]:
    """Compile ``manifest``'s int8 and float32 sub-pixel decoders into ``out_dir``/decoder_{int8,float32}.wasm."""
    from firmware_sim.codegen import generate

    toolchain()
    out_dir = Path(out_dir)
    sources = source_entries(manifest)
    made = {}
    with tempfile.TemporaryDirectory(prefix="vae-edge-wasm-") as tmp:
        tmp = Path(tmp)
        generated = generate(source=manifest.folder, out=tmp / "int8", graph="subpixel", name=manifest.model)
        glue = tmp / "int8" / "browser.c"
        glue.write_text(int8_glue(manifest.model))
        float_c = tmp / "float32.c"
        float_c.write_text(emit_float_decoder(manifest.verify(sources["float32"])))
        built = {
            "int8": compile_module(
                [generated.source, glue],
                out_dir / "decoder_int8.wasm",
                [tmp / "int8"],
                EXPORTS + INT8_EXPORTS,
            ),
            "float32": compile_module([float_c], out_dir / "decoder_float32.wasm", []),
        }
    for precision, path in built.items():
        entry = sources[precision]
        made[precision] = WasmDecoder(
            precision, path, _sha256(path), path.stat().st_size, entry["path"], entry["sha256"]
        )
    return made
