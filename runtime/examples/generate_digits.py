"""Generate handwritten digits on demand with the int8 decoder and write them as PNG — a tiny edge app.

    python -m runtime.examples.generate_digits --export artifacts/vae2d_corr/export -n 8 --out digits/
    python -m runtime.examples.generate_digits --export artifacts/vae2d/export --every 2 --count 5   # a stream

Needs only numpy and ai-edge-litert: the full-integer batch-1 decoder (the one an MCU runs) decodes prior
samples z = L ε; each call writes one PNG grid and prints how long the decode took.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from runtime import Decoder, load_manifest
from runtime.cli import cli_main, nonnegative_float, nonnegative_int, parser, positive_int
from runtime.fileio import ensure_writable_dir
from runtime.png import write_png_grid


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m runtime.examples.generate_digits", __doc__)
    p.add_argument("--export", required=True, help="a model's export folder (holding manifest.json)")
    p.add_argument("-n", type=positive_int, default=8, help="digits per image (default 8)")
    p.add_argument("--out", default="digits", help="output folder for the PNGs (default digits/)")
    p.add_argument("--count", type=positive_int, default=1, help="how many images to write (default 1)")
    p.add_argument("--every", type=nonnegative_float, default=0.0, help="seconds between images (default 0)")
    p.add_argument("--seed", type=nonnegative_int, default=None, help="seed (default: a new one per image)")
    p.add_argument("--threads", type=positive_int, default=1)
    return p.parse_args(argv)


@cli_main
def main(args: argparse.Namespace) -> int:
    manifest = load_manifest(args.export)
    # int8 on the fastest graph exported: the project's sub-pixel one, a user's decoder's transpose one
    decoder = Decoder.from_manifest(manifest, precision="int8", batch=1, num_threads=args.threads)
    out = ensure_writable_dir(args.out)
    for i in range(args.count):
        seed = None if args.seed is None else args.seed + i
        z = manifest.prior.sample(args.n, seed=seed)
        t0 = time.perf_counter()
        images = decoder.decode(z, channel_axis=True)
        ms = (time.perf_counter() - t0) * 1e3
        path = write_png_grid(
            images, Path(out) / f"{manifest.model}_{i:04d}.png", value_range=manifest.image_range
        )
        print(f"{path}: {args.n} images in {ms:.1f} ms ({decoder.name})")
        if i + 1 < args.count and args.every:
            time.sleep(args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
