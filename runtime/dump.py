"""Raw outputs of every exported artifact on fixed inputs, for comparing boards bit for bit.

    python -m runtime dump --artifacts artifacts --out outputs.npz

Runs on the device (an emulated Raspberry Pi in ``make pi-check``): int8 outputs stay int8, so the host can
demand bit-exactness; float outputs are compared within a tolerance by tools/pi/check.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def dump_outputs(
    artifacts: Path, samples: int = 32, seed: int = 123, models: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Raw outputs (int8 stays int8) of every TFLite and ONNX artifact on fixed inputs, of the exported models
    named in ``models`` (None: all of them, the classifier included)."""
    from .backends import quantize
    from .manifest import find_manifests
    from .models import Decoder, _ImageModel

    out = {}
    for name, m in find_manifests(artifacts).items():
        if models is not None and name not in models:
            continue
        for entry in m.artifacts:
            if entry["format"] not in ("tflite", "onnx"):
                continue
            art = Decoder(m, entry, num_threads=1) if entry["role"] == "decoder" else _ImageModel(m, entry, 1)
            n = -(-max(samples, art.batch) // art.batch) * art.batch  # whole batches, at least `samples` rows
            if entry["role"] == "decoder":
                x = art.model_input(m.prior.sample(n, seed=seed))
            else:
                x = np.random.default_rng(seed).uniform(0, 1, (n, 28, 28, 1)).astype(np.float32)
            info = art.model.inputs[0]
            raws = [
                art.model.run_raw([quantize(c, info) if info.quantized else c])
                for c in (x[i : i + art.batch] for i in range(0, n, art.batch))
            ]
            for k in range(len(raws[0])):
                out[f"{name}::{entry['path']}::{k}"] = np.concatenate([r[k] for r in raws])
    return out
