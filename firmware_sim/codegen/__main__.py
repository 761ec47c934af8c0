"""Generate a self-contained C99 int8 decoder from a full-int8 batch-1 ``.tflite`` decoder, bit-exact with TFLM.

    python -m firmware_sim.codegen artifacts/vae2d/export --graph subpixel --out build/firmware
    python -m firmware_sim.codegen path/to/decoder_transpose_int8_b1.tflite --name vae2d --out build/fw

Writes ``<model>_decoder.h`` and ``<model>_decoder.c``: ``<model>_decode(z_int8, logits_int8)`` (integer only, no
malloc, static buffers sized here), ``<model>_sample(z_float, pixels)`` (latent quantization, decode, the
256-entry pixel table), the prior's Cholesky factor and the latent quantization in the header. A graph the
generator cannot trust or does not support is refused with one ``error:`` line and nothing written; the .h and
.c are replaced together or not at all. How the C is made: the firmware_sim.codegen package docstring.
"""

from __future__ import annotations

import argparse
import sys

from runtime.cli import cli_main, parser

from .generator import generate
from .plan import GRAPHS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m firmware_sim.codegen", __doc__)
    p.add_argument(
        "source", help="an export folder (artifacts/<model>/export) or a full-int8 batch-1 .tflite decoder"
    )
    p.add_argument(
        "--graph", choices=GRAPHS, default="subpixel", help="which decoder graph of an export folder"
    )
    p.add_argument(
        "--name",
        default=None,
        help="C prefix (default: the model name from the manifest, else the file stem)",
    )
    p.add_argument("--out", default="build/firmware", help="folder for <name>_decoder.{h,c}")
    return p.parse_args(argv)


@cli_main
def main(args: argparse.Namespace) -> int:
    gen = generate(source=args.source, out=args.out, graph=args.graph, name=args.name)
    plan = gen.plan
    print(
        f"{plan.name}/{plan.graph_kind}: {gen.source} ({plan.real_macs} MACs per decode, rings "
        f"{', '.join(str(r) for r in gen.schedule.ring_rows)} rows)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
