"""The C generator's kernels (firmware_sim/codegen/kernels/) are real C: each file compiles on its own,
warnings as errors, for every instruction set it serves (portable C with gcc, Cortex-M4 DSP and Cortex-M55
Helium with arm-none-eabi-gcc, SSE2 with gcc, WebAssembly SIMD and relaxed SIMD with clang), and the kernel set a
generated decoder holds compiles to object code with every row kernel used, its per-stride inline asm
assembled. No model or TensorFlow needed; fails (never skips) without gcc, arm-none-eabi-gcc or clang with
the wasm32 target."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware_sim.codegen import kernel_source
from firmware_sim.codegen.emit import KERNEL_FILES

KERNELS = Path(__file__).resolve().parents[1] / "firmware_sim" / "codegen" / KERNEL_FILES
WASM_LIBC = (
    Path(__file__).resolve().parents[1] / "tools" / "web" / "wasm"
)  # string.h of the freestanding build
WARN = ("-std=c99", "-Wall", "-Wextra", "-Werror")
BUILDS = {
    "portable": ("gcc", *WARN, "-DVAE_EDGE_PORTABLE"),
    "sse2": ("gcc", *WARN, "-msse2"),
    "cortex-m4": (
        "arm-none-eabi-gcc",
        *WARN,
        "-mcpu=cortex-m4",
        "-mthumb",
        "-mfloat-abi=hard",
        "-mfpu=fpv4-sp-d16",
    ),
    "m55-helium": ("arm-none-eabi-gcc", *WARN, "-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"),
    "wasm": ("clang", *WARN, "--target=wasm32", "-msimd128", "-ffreestanding", f"-I{WASM_LIBC}"),
    "wasm-relaxed": (
        "clang",
        *WARN,
        "--target=wasm32",
        "-msimd128",
        "-ffreestanding",
        f"-I{WASM_LIBC}",
        "-DVAE_EDGE_RELAXED_DOT",
    ),
}
# Which builds each file serves (a file is compiled for each, with only itself included).
FILES = {
    "common.h": ("portable", "sse2", "cortex-m4", "m55-helium", "wasm"),
    "portable.h": ("portable", "cortex-m4", "wasm"),
    "conv_row.h": ("portable", "cortex-m4", "m55-helium"),
    "dense_row.h": ("portable", "cortex-m4", "m55-helium"),
    "dsp.h": ("cortex-m4",),
    "mve.h": ("m55-helium",),
    "dsp_strided.h": ("cortex-m4",),
    "simd.h": ("sse2", "wasm"),
    "simd_rows.h": ("sse2", "wasm"),
    "wasm_relaxed.h": ("wasm-relaxed",),
    "kernels.h": tuple(BUILDS),
}
# Pixel strides (input channels x Q) of a decoder: 64 and 96 have Cortex-M4 kernels; 2 and 600 are outside
# LDRD's reach and take the C kernels.
STRIDES = [2, 64, 96, 600]
# Every row kernel used, so that each is compiled (and the DSP inline asm assembled), not dropped as unused.
USE_KERNELS = """
void vae_edge_kernels_check(const conv_layer_t *L, int r, int16_t *out16, int8_t *out8, int32_t *acc,
                            const int16_t *w16, const int32_t *w16_start, const int8_t *w7,
                            const int32_t *w7_start, const dense_layer_t *d, const int8_t *in) {
  conv_row(L, r, out16, out8, acc);
  dense_row(d, in, r, out16);
  out8[0] = quantize_input((float)r, 0.5f, 3);
#if VAE_EDGE_SIMD128
  conv_row_simd(L, w16, w16_start, r, out16, out8, -1);
#endif
#if VAE_EDGE_RELAXED
  conv_row_relaxed(L, w7, w7_start, r, out8, 0, -1);
  dense_row_relaxed(d, in, r, out8, 64);
#endif
  (void)w16, (void)w16_start, (void)w7, (void)w7_start;
}
"""


def _compile(build: str, args: list[str]) -> subprocess.CompletedProcess:
    cmd = BUILDS[build]
    assert shutil.which(cmd[0]), f"{cmd[0]} is needed (see tests/test_codegen.py for the packages)"
    done = subprocess.run([*cmd, *args], capture_output=True, text=True)
    assert done.returncode == 0, f"{build}: {' '.join(args)}\n{done.stderr[-3000:]}"
    return done


def test_every_kernel_file_is_listed_here():
    assert sorted(p.name for p in KERNELS.glob("*.h")) == sorted(FILES)


@pytest.mark.parametrize(
    "name, build", [(n, b) for n, builds in FILES.items() for b in builds], ids=lambda v: str(v)
)
def test_kernel_file_compiles_on_its_own(name, build, tmp_path):
    """A translation unit that only includes the file: object code, every warning an error."""
    _compile(
        build,
        ["-O2", "-c", "-include", str(KERNELS / name), "-x", "c", "/dev/null", "-o", str(tmp_path / "k.o")],
    )


@pytest.mark.parametrize("build", list(BUILDS))
def test_decoder_kernel_set_compiles_with_every_row_kernel(build, tmp_path):
    """What a generated decoder holds (kernel_source: the files' copied lines, the strides written in), each
    of its row kernels called: compiled and assembled for each instruction set."""
    source = tmp_path / "kernels.c"
    source.write_text(
        "#include <stdint.h>\n#include <string.h>\n#define VAE_EDGE_RELAXED_OK 1\n"
        + kernel_source(STRIDES)
        + USE_KERNELS
    )
    obj = tmp_path / "kernels.o"
    _compile(build, ["-O2", "-c", str(source), "-o", str(obj)])
    assert obj.stat().st_size > 0
    if build == "cortex-m4":  # the stride kernels' second pixel is an LDRD offset of 2 * stride - 8 bytes
        dump = subprocess.run(
            ["arm-none-eabi-objdump", "-d", str(obj)], capture_output=True, text=True, check=True
        ).stdout
        offsets = {int(v) for v in re.findall(r"ldrd\s+\w+, \w+, \[\w+, #(\d+)\]", dump)}
        assert {120, 184} <= offsets, sorted(offsets)
    if build == "m55-helium":  # the Helium loops, not the DSP ones: gathers of the packed weights, VMLADAVA
        dump = subprocess.run(
            ["arm-none-eabi-objdump", "-d", "-m", "armv8.1-m.main", str(obj)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert re.search(r"vml(a|ada)va\.s16", dump) and "vldrb.s16" in dump and "smlad" not in dump


def test_kernel_source_writes_the_strides_ldrd_reaches_and_nothing_of_the_files_scaffolding():
    text = kernel_source(STRIDES)
    assert re.findall(r"mac_2x2_sb(\d+)\(const", text) == ["64", "96"]
    assert re.findall(r"mac_1x2_sb(\d+)\(const", text) == ["64", "96"]
    assert text.count('"ldrd %[q0], %[q1], [%[x], #120]') == 4 and text.count("#184]") == 4
    assert "if (sb == 2 " not in text and "if (sb == 600 " not in text
    for scaffolding in ("vae-edge: copy", '#include "', "VAE_EDGE_EACH_STRIDE", "{sb}", "{qoff}", "_H_"):
        assert scaffolding not in text
    # Without strides the dispatchers fall back to the C kernels alone.
    none = kernel_source([])
    assert "mac_2x2_sb" not in none and "return mac_2x2_c(w, x, sb, n, acc);" in none
    # The SIMD and relaxed row kernels come from their files, whole.
    for name in ("simd_rows.h", "wasm_relaxed.h", "portable.h"):
        copied = (
            (KERNELS / name)
            .read_text()
            .split("/* vae-edge: copy begin */\n")[1]
            .split("/* vae-edge: copy end */\n")[0]
        )
        assert copied in text
