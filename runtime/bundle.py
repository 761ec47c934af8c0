"""Pack what a Raspberry Pi needs to benchmark vae-edge into one tarball (``make pi-bundle``).

    python -m runtime.bundle --artifacts artifacts --data ../shared/data/mnist.npz --out dist/vae-edge-pi.tar.gz

The bundle holds the runtime package (installable with pip), every model's ``export/`` folder (manifest,
TFLite, ONNX, C array), the MNIST test split (for the check's real digits and ELBO) and a README with the
commands. No TensorFlow, no training code.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from .data import load_mnist
from .errors import VaeEdgeError, os_error_line
from .fileio import atomic_path
from .manifest import find_manifests

PI_README = """# vae-edge on a Raspberry Pi

Tested path: Raspberry Pi 4 or 5, 64-bit Raspberry Pi OS (Bookworm), Python 3.11+.

```bash
tar xzf vae-edge-pi.tar.gz && cd vae-edge-pi
python3 -m venv .venv && . .venv/bin/activate
pip install './runtime[onnx,plots]'          # numpy, ai-edge-litert, onnxruntime, matplotlib (aarch64 wheels)
python -m runtime check --artifacts artifacts --data mnist_test.npz --reports reports
python -m runtime bench --artifacts artifacts --reports reports
python -m runtime.examples.generate_digits --export artifacts/vae2d_corr/export -n 8 --out digits
```

Read `reports/bench.md` (latency per decoder at 1 thread and all cores) and `reports/check.md` (quality of the
quantized decoders). The platform line at the top of each report tells a Pi result from an x86 one; compare
`reports/bench.json` with the x86 `reports/bench.json` record by record (same `model`, `artifact`, `threads`).
ai-edge-litert is the default interpreter; tflite-runtime is only a fallback (abandoned at 2.14: numpy < 2,
no wheels past Python 3.11, cannot load the dynamic-range int8 models).
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m runtime.bundle", description=__doc__.split("\n\n")[0])
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument(
        "--data", default=None, help="MNIST .npz (default $VAE_EDGE_MNIST); its test split is packed"
    )
    p.add_argument("--out", default="dist/vae-edge-pi.tar.gz")
    return p.parse_args(argv)


def build_bundle(artifacts: Path, data: str | None, out: Path) -> Path:
    manifests = find_manifests(artifacts)
    if not manifests:
        raise VaeEdgeError(f"no exports under {artifacts}; run make export first")
    for m in manifests.values():
        for entry in m.artifacts:
            m.verify(entry)  # never pack a corrupt or stale file
    mnist = load_mnist(data, test_only=True)
    runtime_dir = Path(__file__).resolve().parent
    with atomic_path(out, suffix=".tar.gz") as tmp, tarfile.open(tmp, "w:gz") as tar:
        root = "vae-edge-pi"
        for path in sorted(runtime_dir.rglob("*")):
            rel = path.relative_to(runtime_dir)
            if path.is_file() and not any(
                p in ("build", "__pycache__") or p.endswith(".egg-info") for p in rel.parts
            ):
                tar.add(path, f"{root}/runtime/{rel}")
        for name, m in manifests.items():
            tar.add(m.folder / "manifest.json", f"{root}/artifacts/{name}/export/manifest.json")
            for entry in m.artifacts:
                tar.add(m.folder / entry["path"], f"{root}/artifacts/{name}/export/{entry['path']}")
        with tempfile.TemporaryDirectory() as tdir:
            npz = Path(tdir) / "mnist_test.npz"
            np.savez_compressed(npz, x_test=mnist.x_test, y_test=mnist.y_test)
            tar.add(npz, f"{root}/mnist_test.npz")
        readme = PI_README.encode()
        info = tarfile.TarInfo(f"{root}/README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    return out


def main(args: argparse.Namespace) -> int:
    try:
        out = build_bundle(Path(args.artifacts), args.data, Path(args.out))
    except VaeEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
