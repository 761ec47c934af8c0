"""The split latent of the full-int8 decoders (runtime/latent.py, export/latent_split.py): the encoding, the
export that writes it, the runtime that applies it, and the manifest that records it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.backends import TensorInfo, quantize
from runtime.errors import InvalidInputError
from runtime.latent import LatentSplit


def test_quantize_equals_the_encoding_quantized_by_the_input_tensor():
    """The two paths into an int8 graph agree: LatentSplit.quantize (the C's) and encode() through the model
    input's own quantization (what runtime.Decoder feeds a TFLite model), including halves and saturation."""
    split = LatentSplit(16, 0.0274, -3)
    rng = np.random.default_rng(0)
    grid = (np.arange(-20, 20) + 3) * np.float32(0.0274)
    z = np.concatenate(
        [
            rng.normal(0, 1.5, (500, 3)).ravel(),
            grid + (np.arange(40) % 7 - 3 + 0.5) * np.float32(0.0274) / 16,  # ties of the second int8
            [9.0, -9.0, 0.0],
        ]
    )
    z = z[: len(z) // 3 * 3].astype(np.float32).reshape(-1, 3)
    q = split.quantize(z)
    assert q.shape == (len(z), 6) and q.dtype == np.int8
    np.testing.assert_array_equal(q, quantize(split.encode(z), TensorInfo("z", (1, 6), "int8", 0.0274, -3)))
    inside = np.abs(z).max(axis=1) < 3
    assert np.abs(split.decode(q) - z)[inside].max() <= 0.0274 / 32 * 1.001
    plain = np.abs(((q[:, :3].astype(int) + 3) * np.float32(0.0274)) - z)[inside].max()
    assert plain > 8 * np.abs(split.decode(q) - z)[inside].max()  # the second int8 buys the finer grid


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"radix": 12, "scale": 0.1, "zero_point": 0}, "power of two"),
        ({"radix": 1, "scale": 0.1, "zero_point": 0}, "power of two"),
        ({"radix": 16, "scale": -0.1, "zero_point": 0}, "positive"),
        ({"radix": 16, "scale": 0.1, "zero_point": 300}, "int8"),
    ],
)
def test_invalid_split_is_refused(fields, problem):
    with pytest.raises(InvalidInputError, match=problem):
        LatentSplit.from_json(fields)


def test_export_writes_the_split_and_the_runtime_applies_it(exported):
    """Every full-int8 TFLite decoder takes 2 x latent_dim int8s and says how in its manifest entry and its
    metadata; the runtime's decode equals the model run on LatentSplit.quantize by hand."""
    from firmware_sim.codegen.layouts import derived_weights, stored_dense_weights
    from firmware_sim.codegen.lowering import latent_split_of, lower
    from firmware_sim.graph import load_graph
    from runtime.backends import TFLiteModel
    from runtime.manifest import load_manifest
    from runtime.models import Decoder

    manifest = load_manifest(exported / "vae2d_corr" / "export")
    split_entries = [a for a in manifest.artifacts if "latent_split" in a]
    int8_tflite = manifest.find(role="decoder", format="tflite", precision="int8")
    assert {a["path"] for a in split_entries} == {a["path"] for a in int8_tflite} and len(int8_tflite) == 8
    for entry in [a for a in manifest.find(role="decoder") if a["format"] in ("tflite", "onnx")]:
        width = entry["inputs"][0]["shape"][1]
        assert width == (4 if entry in split_entries else 2), entry["path"]
    entry = manifest.select(
        role="decoder", format="tflite", precision="int8", io="int8", batch=1, graph="subpixel"
    )
    split = LatentSplit.from_json(entry["latent_split"])
    assert split.radix == 16 and entry["inputs"][0]["scale"] == pytest.approx(split.scale)
    path = manifest.verify(entry)
    assert latent_split_of(load_graph(path), 4) == 16
    # The remainders' int8 weights are the grid points' divided by 16 (export/latent_split.py's derivable_kernel),
    # so the C stores half of them (dense_row.h derives the rest).
    plan = lower(load_graph(path), name="m", graph_kind="subpixel")
    stored, shift = stored_dense_weights(plan.dense.weights, plan.latent_split)
    assert shift == 4 and stored.shape == (plan.dense.weights.shape[0], 2)
    assert np.array_equal(plan.dense.weights[:, 2:], derived_weights(plan.dense.weights[:, :2], 16))
    assert np.abs(plan.dense.weights[:, :2]).max() == 127

    z = manifest.prior.sample(6, seed=3).astype(np.float32)
    decoder = Decoder(manifest, entry)
    model = TFLiteModel(path)
    by_hand = np.concatenate([model.run_raw([q[None]])[0] for q in split.quantize(z)])
    logits = (by_hand.astype(np.float32) - entry["outputs"][0]["zero_point"]) * np.float32(
        entry["outputs"][0]["scale"]
    )
    np.testing.assert_allclose(
        decoder.raw_output(z).reshape(len(z), -1), logits.reshape(len(z), -1), atol=1e-6
    )
    fio = Decoder.from_manifest(manifest, precision="int8", graph="subpixel", io="float")
    np.testing.assert_allclose(fio.decode(z), decoder.decode(z), atol=1e-6)


def test_manifest_with_a_broken_split_is_refused(exported, tmp_path):
    import shutil

    from runtime.manifest import ManifestError, load_manifest

    folder = tmp_path / "export"
    shutil.copytree(exported / "vae2d_corr" / "export", folder)
    data = json.loads((folder / "manifest.json").read_text())
    entry = next(a for a in data["artifacts"] if "latent_split" in a)
    entry["latent_split"]["radix"] = 10
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"latent_split' is not a valid latent split .*power of two"):
        load_manifest(folder)


def test_derived_weights_round_half_away_from_zero():
    from firmware_sim.codegen.layouts import derived_weights, stored_dense_weights

    w = np.arange(-128, 128, dtype=np.int8)
    expect = [int(np.sign(v) * np.floor(abs(v) / 16 + 0.5)) for v in w.astype(int)]
    assert derived_weights(w, 16).tolist() == expect
    full = np.stack([w, derived_weights(w, 16).astype(np.int8)], axis=1)
    assert stored_dense_weights(full, 16)[1] == 4
    full[3, 1] += 1  # one remainder weight off: both halves stored
    stored, shift = stored_dense_weights(full, 16)
    assert shift == 0 and stored.shape == full.shape
