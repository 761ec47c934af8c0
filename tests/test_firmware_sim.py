"""firmware_sim/: the numpy integer reference is bit-exact with TFLite Micro (whole decoders and each op with
random scales and zero points), the planner respects the live-set bound, the arena bisection is tight, and an
unsupported op is named."""

from __future__ import annotations

import json
import zlib

import keras
import numpy as np
import pytest

from export.convert import to_tflite
from firmware_sim.__main__ import main, parse_args
from firmware_sim.graph import UnsupportedOpError, load_graph
from firmware_sim.planner import buffers_for, largest_live_set, plan
from firmware_sim.reference import IntegerReference
from firmware_sim.tflm import TflmModel, arena_works, smallest_arena
from train.model import DepthToSpace

TINY_LATENTS = 300
# The tiny export's full-int8 decoders take the split latent: two int8s per latent dimension (runtime/latent.py).
SPLIT_INPUTS = 4


def tflm_vs_reference(path, inputs):
    data = path.read_bytes()
    tflm = TflmModel(data, smallest_arena(data, inputs[0]))
    ref = IntegerReference(load_graph(path))
    worst = 0
    for x in inputs:
        worst = max(worst, int(np.abs(ref.run(x).astype(np.int32) - tflm.run(x).astype(np.int32)).max()))
    return worst


@pytest.mark.parametrize("graph", ["transpose", "subpixel"])
def test_decoder_bit_exact_with_tflm(exported, graph):
    path = exported / "vae2d_corr" / "export" / f"decoder_{graph}_int8_b1.tflite"
    latents = np.random.default_rng(1).integers(-128, 128, (TINY_LATENTS, 1, SPLIT_INPUTS)).astype(np.int8)
    assert tflm_vs_reference(path, latents) == 0


def single_op_models():
    """One small Keras model per op kind the decoders use, each to be quantized with its own random ranges."""
    L = keras.layers

    def seq(shape, *layers):
        x_in = keras.Input(shape, batch_size=1)
        x = x_in
        for layer in layers:
            x = layer(x)
        return keras.Model(x_in, x)

    return {
        "FULLY_CONNECTED+RELU": seq((3,), L.Dense(24, activation="relu")),
        "FULLY_CONNECTED": seq((5,), L.Dense(7)),
        "CONV_2D 3x3 same": seq((6, 6, 3), L.Conv2D(4, 3, padding="same")),
        "CONV_2D 2x2 valid relu": seq((5, 5, 4), L.Conv2D(8, 2, padding="valid", activation="relu")),
        "CONV_2D stride 2": seq((7, 7, 2), L.Conv2D(3, 3, strides=2, padding="same", activation="relu")),
        "TRANSPOSE_CONV s2 relu": seq(
            (4, 4, 3), L.Conv2DTranspose(5, 3, strides=2, padding="same", activation="relu")
        ),
        "TRANSPOSE_CONV s1": seq((5, 5, 4), L.Conv2DTranspose(1, 3, padding="same")),
        "PAD": seq((4, 4, 2), L.ZeroPadding2D(((1, 0), (1, 0))), L.Conv2D(2, 2)),
        "DEPTH_TO_SPACE": seq((3, 3, 8), L.Conv2D(8, 1), DepthToSpace(2)),
        "LOGISTIC": seq((10,), L.Dense(10), L.Activation("sigmoid")),
        "RESHAPE": seq((4,), L.Dense(12), L.Reshape((2, 2, 3)), L.Conv2D(2, 1)),
    }


@pytest.mark.parametrize("name", list(single_op_models()))
def test_each_op_bit_exact_with_tflm(name, tmp_path):
    model = single_op_models()[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))  # stable across runs (hash() is salted)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(
                [
                    rng.normal(0, rng.uniform(0.2, 1.5), w.shape).astype(np.float32)
                    for w in layer.get_weights()
                ]
            )
    # A random offset and spread per model gives random input scales and zero points.
    shape = tuple(model.inputs[0].shape)
    calib = (rng.normal(rng.uniform(-2, 2), rng.uniform(0.3, 3), (64, *shape[1:]))).astype(np.float32)
    path = tmp_path / "op.tflite"
    path.write_bytes(to_tflite(model, "int8", "int8", calib))
    inputs = rng.integers(-128, 128, (60, *shape)).astype(np.int8)
    assert tflm_vs_reference(path, inputs) == 0


def test_unsupported_op_is_named(tmp_path):
    x_in = keras.Input((6, 6, 1), batch_size=1)
    model = keras.Model(x_in, keras.layers.MaxPooling2D()(keras.layers.Conv2D(2, 3)(x_in)))
    path = tmp_path / "maxpool.tflite"
    path.write_bytes(
        to_tflite(
            model, "int8", "int8", np.random.default_rng(0).normal(size=(16, 6, 6, 1)).astype(np.float32)
        )
    )
    with pytest.raises(UnsupportedOpError, match="does not implement MAX_POOL_2D"):
        IntegerReference(load_graph(path))


@pytest.mark.parametrize("graph", ["transpose", "subpixel"])
def test_planner_respects_live_set_and_matches_tflm_head(exported, graph):
    path = exported / "vae2d_corr" / "export" / f"decoder_{graph}_int8_b1.tflite"
    g = load_graph(path)
    for fused in (False, True):
        p = plan(g, fused)
        bufs = buffers_for(g, fused)
        assert p["arena_bytes"] >= largest_live_set(bufs, len(g.ops)) >= max(b.size for b in bufs)
        for a in p["buffers"]:  # no two buffers alive together overlap in memory
            for b in p["buffers"]:
                if a is not b and not (a["last_op"] < b["first_op"] or b["last_op"] < a["first_op"]):
                    assert a["offset"] + a["bytes"] <= b["offset"] or b["offset"] + b["bytes"] <= a["offset"]
    tflm = TflmModel(path.read_bytes(), 400_000)
    tflm.run(np.zeros((1, SPLIT_INPUTS), np.int8))
    assert plan(g, fused=False)["arena_bytes"] == tflm.allocations()["head_bytes"]
    assert plan(g, fused=True)["arena_bytes"] <= plan(g, fused=False)["arena_bytes"]


def test_arena_bisection_is_tight(exported):
    data = (exported / "vae2d_corr" / "export" / "decoder_subpixel_int8_b1.tflite").read_bytes()
    probe = np.zeros((1, SPLIT_INPUTS), np.int8)
    size = smallest_arena(data, probe)
    assert arena_works(data, size, probe) and not arena_works(data, size - 1, probe)


def test_cli_report(exported, tmp_path):
    rc = main(
        parse_args(
            [
                "--model",
                "vae2d_corr",
                "--artifacts",
                str(exported),
                "--latents",
                "40",
                "--reports",
                str(tmp_path),
            ]
        )
    )
    assert rc == 0
    rec = json.loads((tmp_path / "firmware.json").read_text())["records"][0]
    for key in (
        "model",
        "tflm_arena_bytes",
        "planned_ram_bytes",
        "flash_bytes",
        "bit_exact_vs_tflm",
        "latents_checked",
    ):
        assert key in rec
    assert rec["bit_exact_vs_tflm"] and rec["latents_checked"] == 40
    assert set(rec["targets"]) == {"cortex-m4", "cortex-m7", "esp32-s3"}
    assert all("fits" in v for v in rec["targets"].values())
    assert rec["planned_ram_bytes"] < rec["tflm_arena_bytes"]
    assert "What the MCU computes" in (tmp_path / "firmware.md").read_text()
