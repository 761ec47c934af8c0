"""TFLite Micro exactness that cannot pass by luck: constructed scales and accumulators, independent of training.

The numpy reference and the generated C must reproduce the pinned TFLite Micro bit for bit. Which trained weights
put an accumulator on a requantization boundary differs from CPU to CPU, so these tests build the boundary cases
on purpose (firmware_sim.synthetic) and show, each time, that an implementation taking FULLY_CONNECTED's scale
product in float32 (TFLite's builtin kernels) would fail them. Fails (never skips) without tflite-micro, gcc.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import numpy as np
import pytest

import firmware_sim.reference as reference_module
from firmware_sim import TFLM_VERSION, measure
from firmware_sim.codegen import generate
from firmware_sim.fixedpoint import multiply_by_quantized_multiplier
from firmware_sim.graph import _parse, load_graph
from firmware_sim.reference import IntegerReference, effective_scale, fully_connected_multiplier
from firmware_sim.synthetic import (
    BOUNDARY_KINDS,
    ELEMENTWISE_KINDS,
    SINGLE_OP_KINDS,
    fully_connected_model,
    multiplier_pair,
    rescale_multiplier_pair,
    single_op_case,
)
from firmware_sim.tflm import TflmModel
from tools.exactness import (
    DECODER_KIND,
    LITERT_KERNELS,
    check_decoders,
    check_single_ops,
    compare_runtimes,
)

REPO = Path(__file__).resolve().parents[1]
# The case issue 22 measured on a Xeon-trained vae2d_corr: TFLM gives 239 - 128 = 111 where a float32 product gives 110.
S_IN, S_W, S_OUT = 0.023448158, 0.0003446328, 0.00078156206
ACC = 23066
ARENA = 8 << 20
UNITS = 7 * 7 * 8
# The tiny export's full-int8 decoders take the split latent: two int8s per latent dimension (runtime/latent.py).
SPLIT_INPUTS = 4


def _float32_product_multiplier(inp, filt, out):
    """What TFLite's builtin kernels (and this project before the fix) computed for FULLY_CONNECTED."""
    return multiplier_pair(inp.scale[0], filt.scale[0], out.scale[0])[1]


def _tflm(model: bytes, x: np.ndarray) -> np.ndarray:
    return TflmModel(model, ARENA).run(x)


def test_tflm_version_is_pinned_in_one_place():
    pins = re.findall(r"^tflite-micro==(\S+)$", (REPO / "requirements.txt").read_text(), re.M)
    assert pins == [TFLM_VERSION]
    assert importlib.metadata.version("tflite-micro") == TFLM_VERSION
    assert TFLM_VERSION in (REPO / "README.md").read_text()


def test_issue22_fully_connected_case_is_tflm_exact():
    (m_double, shift), (m_single, shift_single) = multiplier_pair(S_IN, S_W, S_OUT)
    assert (m_double, shift) == (1421057713, -6) and (m_single, shift_single) == (1421057652, -6)
    assert multiply_by_quantized_multiplier(ACC, m_double, shift) == 239
    assert multiply_by_quantized_multiplier(ACC, m_single, shift) == 238
    # acc = bias alone (input at its zero point), and the same accumulator from the weights (no bias)
    x = np.array([[0, 1]], np.int8)
    for weights, bias in ((np.array([[0, 0]], np.int8), [ACC]), (np.array([[0, 127]], np.int8), [ACC - 127])):
        model = fully_connected_model(
            weights=weights,
            bias=np.array(bias),
            batch=1,
            s_in=S_IN,
            zp_in=0,
            s_w=S_W,
            s_out=S_OUT,
            zp_out=-128,
        )
        graph = _parse("issue22", model)
        assert int(_tflm(model, x)[0, 0]) == 111
        assert int(IntegerReference(graph).run(x)[0, 0]) == 111
        fc = graph.ops[0]
        t = graph.tensors
        assert fully_connected_multiplier(t[fc.inputs[0]], t[fc.inputs[1]], t[fc.outputs[0]]) == (
            m_double,
            -6,
        )
    assert effective_scale(S_IN, S_W, S_OUT) == float(np.float32(S_IN)) * float(np.float32(S_W)) / float(
        np.float32(S_OUT)
    )


@pytest.mark.parametrize("kind", BOUNDARY_KINDS)
def test_boundary_accumulators_match_tflm(kind, monkeypatch):
    """Scale triples where float32 and double products give different multipliers, inputs on the boundary."""
    rng = np.random.default_rng(22)
    cases = [single_op_case(kind, rng, batch=400, boundary=True) for _ in range(12)]
    tflm = [_tflm(c.model, c.inputs) for c in cases]
    for case, expected in zip(cases, tflm, strict=True):
        assert np.array_equal(IntegerReference(_parse(kind, case.model)).run(case.inputs), expected), (
            case.note
        )
    # The same cases catch a float32 product: every model then differs from TFLM somewhere.
    monkeypatch.setattr(reference_module, "fully_connected_multiplier", _float32_product_multiplier)

    def per_channel_float32(inp, filt, out, channels):
        pairs = [
            multiplier_pair(inp.scale[0], filt.scale[c % len(filt.scale)], out.scale[0])[1]
            for c in range(channels)
        ]
        return np.array([m for m, _ in pairs], np.int64), np.array([s for _, s in pairs], np.int64)

    monkeypatch.setattr(reference_module, "per_channel_multipliers", per_channel_float32)
    wrong = [IntegerReference(_parse(kind, c.model)).run(c.inputs) for c in cases]
    assert all(not np.array_equal(w, t) for w, t in zip(wrong, tflm, strict=True))


def test_fully_connected_of_a_2d_decoder_over_every_int8_latent(monkeypatch):
    """The issue's scales on a 2-D decoder's Dense layer (2 -> 7·7·8), all 65,536 int8 latents."""
    rng = np.random.default_rng(65536)
    weights = rng.integers(-127, 128, (UNITS, 2)).astype(np.int8)
    bias = rng.integers(-6000, 6000, UNITS)
    bias[:8] = ACC - np.arange(8)  # units whose accumulators reach 23066 (unit 0 at the latent (0, 0))
    grid = (
        np.stack(np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)), -1).reshape(-1, 2).astype(np.int8)
    )
    chunk = 8192  # eight invokes of 8,192 latents
    model = fully_connected_model(
        weights=weights, bias=bias, batch=chunk, s_in=S_IN, zp_in=0, s_w=S_W, s_out=S_OUT, zp_out=-128
    )
    tflm = TflmModel(model, 2 * chunk * (2 + UNITS) + (1 << 20))
    chunks = [grid[k : k + chunk] for k in range(0, len(grid), chunk)]
    expected = np.concatenate([tflm.run(c) for c in chunks])
    ours = IntegerReference(_parse("fc65536", model))
    assert np.array_equal(np.concatenate([ours.run(c) for c in chunks]), expected)
    monkeypatch.setattr(reference_module, "fully_connected_multiplier", _float32_product_multiplier)
    wrong = IntegerReference(_parse("fc65536", model))
    assert int((np.concatenate([wrong.run(c) for c in chunks]) != expected).sum()) > 0  # the corner is there


def _with_issue22_dense(data: bytes) -> bytes:
    """The decoder with the issue's Dense scales and its first unit fed the boundary accumulator alone."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    obj = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(data), 0))
    sg = obj.subgraphs[0]
    fc = sg.operators[0]
    x, w, b, y = (sg.tensors[int(i)] for i in (*fc.inputs, fc.outputs[0]))
    # the Dense output's new quantization carries through the ops that move it unchanged (RESHAPE, and the
    # sub-pixel graph's PAD), which need the same quantization on both sides
    moved = [y]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in obj.operatorCodes]
    movers = (schema.BuiltinOperator.RESHAPE, schema.BuiltinOperator.PAD)
    for op in sg.operators[1:]:
        if codes[op.opcodeIndex] not in movers:
            break
        moved.append(sg.tensors[int(op.outputs[0])])
    x.quantization.scale, x.quantization.zeroPoint = np.array([S_IN], np.float32), np.array([0], np.int64)
    w.quantization.scale = np.array([S_W], np.float32)
    b.quantization.scale = np.array([np.float32(S_IN) * np.float32(S_W)], np.float32)
    for t in moved:
        t.quantization.scale, t.quantization.zeroPoint = (
            np.array([S_OUT], np.float32),
            np.array([-128], np.int64),
        )
    weights = np.frombuffer(bytes(obj.buffers[w.buffer].data), np.int8).reshape(tuple(w.shape)).copy()
    weights[0] = 0
    bias = np.frombuffer(bytes(obj.buffers[b.buffer].data), np.int32).copy()
    bias[0] = ACC
    obj.buffers[w.buffer].data = np.frombuffer(weights.tobytes(), np.uint8)
    obj.buffers[b.buffer].data = np.frombuffer(bias.tobytes(), np.uint8)
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize("graph", ["transpose", "subpixel"])
def test_decoder_on_the_corner_generated_c_is_tflm_exact(exported, tmp_path, graph, monkeypatch):
    """A whole decoder whose Dense unit 0 sits on the issue's boundary for every latent: C (SSE2 and portable,
    sanitized) and the reference give TFLM's logits; a float32 product would not."""
    source = exported / "vae2d_corr" / "export" / f"decoder_{graph}_int8_b1.tflite"
    path = tmp_path / f"corner_{graph}_int8_b1.tflite"
    path.write_bytes(_with_issue22_dense(source.read_bytes()))
    gen = generate(source=path, out=tmp_path / "generated", graph=graph, name="corner")
    zs = np.random.default_rng(3).integers(-128, 128, (40, gen.plan.input_size)).astype(np.int8)
    for portable in (False, True):
        check = measure.check_host(gen, path, latents=zs, out=tmp_path, portable=portable)
        assert check.latents_checked == 40 and check.bit_exact
    tflm = TflmModel(path.read_bytes(), ARENA)
    monkeypatch.setattr(reference_module, "fully_connected_multiplier", _float32_product_multiplier)
    wrong = IntegerReference(load_graph(path))
    assert any(not np.array_equal(wrong.run(z[None]), tflm.run(z[None])) for z in zs[:10])


def test_single_op_search_finds_no_difference():
    """A seeded subset of make exactness: every op kind, drawn models, TFLM against the reference."""
    results = check_single_ops(seed=7, models_per_op=12, inputs=300)
    assert [r.kind for r in results] == list(SINGLE_OP_KINDS)
    assert set(ELEMENTWISE_KINDS) <= set(SINGLE_OP_KINDS)
    for r in results:
        assert r.models == 12 and r.inputs == 12 * 300 and r.values >= r.inputs
        assert r.differing_values == 0, r.examples


@pytest.mark.parametrize("kind", ELEMENTWISE_KINDS)
def test_elementwise_table_is_tflm_exact_on_every_int8(kind, monkeypatch):
    """TANH, LEAKY_RELU, RELU, RELU6: 30 drawn quantizations each, every int8 input. The 256-entry table the
    generator reads (the op's method on a 1-D array of all int8 values) and a run of the reference give TFLM's
    outputs. RELU and LEAKY_RELU cases on a rescale boundary fail with the multiplier in float32, as
    tflite-micro's source reads, not in double, as the pinned wheel computes it."""
    rng = np.random.default_rng([26, ELEMENTWISE_KINDS.index(kind)])
    every = np.arange(-128, 128, dtype=np.int8)
    cases = [single_op_case(kind, rng, batch=256) for _ in range(30)]
    tflm = [_tflm(c.model, c.inputs) for c in cases]
    for case, expected in zip(cases, tflm, strict=True):
        assert np.array_equal(np.unique(case.inputs), every)  # each table entry is compared
        graph = _parse(kind, case.model)
        ref = IntegerReference(graph)
        table, _, _ = getattr(ref, "_" + kind.lower())(graph.ops[0], [every])
        assert table.dtype == np.int8 and table.shape == (256,)
        assert np.array_equal(table[case.inputs.astype(np.int64) + 128], expected), case.note
        assert np.array_equal(ref.run(case.inputs), expected), case.note
    if kind in ("RELU", "LEAKY_RELU"):
        boundary = [k for k, c in enumerate(cases) if c.note.endswith("(boundary)")]
        assert len(boundary) >= 5
        monkeypatch.setattr(
            reference_module,
            "rescale_multiplier",
            lambda s_in, s_out, alpha=1.0: rescale_multiplier_pair(s_in, s_out, alpha)[1],
        )
        for k in boundary:
            wrong = IntegerReference(_parse(kind, cases[k].model)).run(cases[k].inputs)
            assert not np.array_equal(wrong, tflm[k]), cases[k].note


def test_decoder_search_finds_no_difference(tmp_path):
    """Two redrawn decoders (one per graph) as generated C, 150 latents each, against TFLM and the reference."""
    result = check_decoders(seed=7, decoders=2, inputs=150, work=tmp_path)
    assert result.kind == DECODER_KIND and result.models == 2 and result.values == 2 * 2 * 2 * 150
    assert result.differing_values == 0, result.examples


def test_litert_kernels_are_compared_with_tflm(exported, tmp_path):
    """On the corner decoder LiteRT's builtin reference kernels (float32 product) leave TFLM's bits."""
    source = exported / "vae2d_corr" / "export" / "decoder_transpose_int8_b1.tflite"
    path = tmp_path / "corner_transpose_int8_b1.tflite"
    path.write_bytes(_with_issue22_dense(source.read_bytes()))
    zs = np.random.default_rng(5).integers(-128, 128, (20, SPLIT_INPUTS)).astype(np.int8)
    rows = {r.runtime: r for r in compare_runtimes(tflite=path, latents=zs)}
    assert set(rows) == set(LITERT_KERNELS)
    assert all(r.latents == 20 and r.logits == 20 * 784 for r in rows.values())
    assert rows["LiteRT builtin reference"].differing_logits > 0


def test_pixel_table_of_a_coarse_logit_scale():
    """Found by make exactness: a redrawn decoder's logit scale of ~6 overflowed exp() in the pixel table."""
    from export.carray import pixel_lut

    lut = pixel_lut(6.0, 0)
    assert lut[0] == 0 and lut[128] == 128 and lut[-1] == 255 and lut == sorted(lut)
    assert pixel_lut(0.05, -3) == [round(255 / (1 + np.exp(-0.05 * (q + 3)))) for q in range(-128, 128)]
