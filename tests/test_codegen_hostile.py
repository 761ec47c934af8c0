"""Issue 23, "the generated C trusts the graph": a hostile or corrupted .tflite is refused by
``python -m firmware_sim.codegen`` with exit code 2, one ``error:`` line and nothing written, never C that reads
out of bounds nor a traceback; the .h/.c pair is replaced as a set. Each case edits one of two small untrained
decoders (tools.exactness.base_decoder: the transposed and the sub-pixel graph) through the schema, as
tools/fuzz/graph_mutate.py does; no training, no compiler."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from firmware_sim.codegen import ACC_LIMIT, check_prior, lower, run_plan
from firmware_sim.codegen import main as codegen_main
from firmware_sim.codegen import parse_args as codegen_args
from firmware_sim.graph import load_graph
from firmware_sim.reference import IntegerReference
from runtime.errors import VaeEdgeError
from tools.exactness import base_decoder
from tools.fuzz.graph_mutate import edit_tflite, ops_of


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """{"transpose": bytes, "subpixel": bytes}: the two base decoders, converted once (a few seconds each)."""
    work = tmp_path_factory.mktemp("hostile_bases")
    return {
        graph: base_decoder(work, index).read_bytes() for graph, index in (("transpose", 0), ("subpixel", 1))
    }


def _codegen(path, out, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = codegen_main(codegen_args([str(path), "--out", str(out), "--name", "hostile"]))
    return rc, capsys.readouterr().err.strip().splitlines()


# --------------------------------------------------------------------------------------------- the edits
def _input_shape(d):
    def fn(m, sg):
        sg.tensors[sg.inputs[0]].shape = np.array([1, d], np.int32)

    return fn


def _first(kind, m, sg):
    return ops_of(m, sg, kind)[0]


def _fc_weight_scale(value):
    def fn(m, sg):
        sg.tensors[_first("FULLY_CONNECTED", m, sg).inputs[1]].quantization.scale = np.array(
            [value], np.float32
        )

    return fn


def _activation_scale(value):
    def fn(m, sg):
        sg.tensors[_first("FULLY_CONNECTED", m, sg).outputs[0]].quantization.scale = np.array(
            [value], np.float32
        )
        # RESHAPE keeps its input's quantization (else that check would speak first)
        sg.tensors[_first("RESHAPE", m, sg).outputs[0]].quantization.scale = np.array([value], np.float32)

    return fn


def _negative_dim(m, sg):
    sg.tensors[_first("RESHAPE", m, sg).outputs[0]].shape = np.array([1, -7, 7, 16], np.int32)


def _buffer_index(m, sg):
    sg.tensors[_first("TRANSPOSE_CONV", m, sg).inputs[1]].buffer = 10_000


def _d2s_block0(m, sg):
    _first("DEPTH_TO_SPACE", m, sg).builtinOptions.blockSize = 0


def _stride0(m, sg):
    o = _first("TRANSPOSE_CONV", m, sg).builtinOptions
    o.strideH = o.strideW = 0


def _op_input_999(m, sg):
    op = _first("TRANSPOSE_CONV", m, sg)
    op.inputs = np.array([op.inputs[0], 999, op.inputs[2], op.inputs[3]], np.int32)


def _buffer_short(m, sg):
    t = sg.tensors[_first("TRANSPOSE_CONV", m, sg).inputs[1]]
    m.buffers[t.buffer].data = np.asarray(m.buffers[t.buffer].data)[:-3]


def _fc_output_size(m, sg):
    """FULLY_CONNECTED weights (784, 2) but its output says 783 (and RESHAPE agrees)."""
    sg.tensors[_first("FULLY_CONNECTED", m, sg).outputs[0]].shape = np.array([1, 783], np.int32)


def _conv_channels(m, sg):
    """The first TRANSPOSE_CONV's filter reads 8 channels (a consistent filter: shape and buffer) of 16."""
    t = sg.tensors[_first("TRANSPOSE_CONV", m, sg).inputs[1]]
    oc, kh, kw, _ = (int(s) for s in t.shape)
    t.shape = np.array([oc, kh, kw, 8], np.int32)
    m.buffers[t.buffer].data = np.ones(oc * kh * kw * 8, np.uint8)


def _output_shape(m, sg):
    """A TRANSPOSE_CONV's output (and the output_shape constant) say 15x15, its input and stride make 14x14."""
    op = _first("TRANSPOSE_CONV", m, sg)
    sg.tensors[op.outputs[0]].shape = np.array([1, 15, 15, 16], np.int32)
    shape_t = sg.tensors[op.inputs[0]]
    m.buffers[shape_t.buffer].data = np.frombuffer(np.array([1, 15, 15, 16], np.int32).tobytes(), np.uint8)


def _zero_point(value):
    def fn(m, sg):
        sg.tensors[sg.inputs[0]].quantization.zeroPoint = np.array([value], np.int64)

    return fn


def _bias_overflow(m, sg):
    """A bias near INT32_MAX: bias + Σ w·(x − zp) leaves int32 (the C's sums are int32, TFLite's too)."""
    op = _first("TRANSPOSE_CONV", m, sg)
    t = sg.tensors[op.inputs[3]]
    b = np.frombuffer(bytes(m.buffers[t.buffer].data), np.int32).copy()
    b[0] = 2**31 - 1000
    m.buffers[t.buffer].data = np.frombuffer(b.tobytes(), np.uint8)


def _pad_requantizes(m, sg):
    sg.tensors[_first("PAD", m, sg).outputs[0]].quantization.zeroPoint = np.array([-127], np.int64)


def _bad_padding(m, sg):
    _first("TRANSPOSE_CONV", m, sg).builtinOptions.padding = 7


def _per_channel_count(m, sg):
    t = sg.tensors[_first("TRANSPOSE_CONV", m, sg).inputs[1]]
    t.quantization.scale = np.full(3, t.quantization.scale[0], np.float32)
    t.quantization.zeroPoint = np.zeros(3, np.int64)


def _not_a_chain(m, sg):
    """The second TRANSPOSE_CONV reads the RESHAPE output (the first one's input), not the first one's output."""
    second = ops_of(m, sg, "TRANSPOSE_CONV")[1]
    second.inputs = np.array(
        [second.inputs[0], second.inputs[1], _first("RESHAPE", m, sg).outputs[0], second.inputs[3]], np.int32
    )


def _no_options(m, sg):
    _first("TRANSPOSE_CONV", m, sg).builtinOptions = None


def _opcode_index(m, sg):
    _first("TRANSPOSE_CONV", m, sg).opcodeIndex = 99


def _tiny_weight_scale(m, sg):
    """A scale within range whose ratio s_in·s_w/s_out (about 2^-36) needs a right shift beyond 31."""
    sg.tensors[_first("TRANSPOSE_CONV", m, sg).inputs[1]].quantization.scale = np.array([1e-11], np.float32)


def _pad_negative(m, sg):
    t = sg.tensors[_first("PAD", m, sg).inputs[1]]
    v = np.frombuffer(bytes(m.buffers[t.buffer].data), np.int32).copy()
    v[2] = -3
    m.buffers[t.buffer].data = np.frombuffer(v.tobytes(), np.uint8)


CASES = {
    # issue 23's measured cases
    "input (1, 300): reads dense_w out of bounds": ("transpose", _input_shape(300), "latent size 300"),
    "input (1, 2000): 24.5 MB of C": ("transpose", _input_shape(2000), "latent size is 2000"),
    "input (1, 1): weights read with the wrong stride": ("transpose", _input_shape(1), "latent size 1"),
    "scale 1e30: shift 102": ("transpose", _fc_weight_scale(1e30), "scale 1e+30"),
    "negative dimension": ("transpose", _negative_dim, "negative dimension"),
    "buffer index out of range": ("transpose", _buffer_index, "buffer 10000"),
    "DEPTH_TO_SPACE block 0": ("subpixel", _d2s_block0, "block size 0"),
    "stride 0": ("transpose", _stride0, "strides 0x0"),
    "NaN scale": ("transpose", _activation_scale(float("nan")), "scale nan"),
    "op input 999": ("transpose", _op_input_999, "tensor 999"),
    "zero scale": ("transpose", _activation_scale(0.0), "scale 0,"),
    "latent size 100,000": ("transpose", _input_shape(100_000), "latent size is 100000"),
    # the rest of the checks
    "weight buffer shorter than its shape": (
        "transpose",
        _buffer_short,
        "needs 2304 bytes but its buffer holds 2301",
    ),
    "FULLY_CONNECTED output size": ("transpose", _fc_output_size, "computes shape (1, 784)"),
    "filter input channels": ("transpose", _conv_channels, "reads 8 channels"),
    "output shape": ("transpose", _output_shape, "computes shape (1, 14, 14, 16)"),
    "zero point 200": ("transpose", _zero_point(200), "zero point 200"),
    "bias overflows int32 sums": ("transpose", _bias_overflow, "int32 sums"),
    "PAD changes the zero point": ("subpixel", _pad_requantizes, "changes the quantization"),
    "padding enum": ("transpose", _bad_padding, "padding 7"),
    "per-channel scales of the wrong count": ("transpose", _per_channel_count, "3 scales"),
    "not a chain": ("transpose", _not_a_chain, "not the previous op's output"),
    "options missing": ("transpose", _no_options, "no strideH option"),
    "operator code index": ("transpose", _opcode_index, "operator code 99"),
    "multiplier shift beyond 31": ("transpose", _tiny_weight_scale, "MultiplyByQuantizedMultiplier"),
    "negative padding": ("subpixel", _pad_negative, "paddings"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_graph_is_one_line_and_nothing_written(bases, tmp_path, capsys, case):
    graph, fn, expect = CASES[case]
    path = tmp_path / f"hostile_{graph}_int8_b1.tflite"
    path.write_bytes(edit_tflite(bases[graph], fn))
    out = tmp_path / "out"
    rc, err = _codegen(path, out, capsys)
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert expect in err[0], err[0]
    assert not out.exists()


def test_unedited_and_consistently_edited_graphs_still_generate(bases, tmp_path, capsys):
    """The checks refuse nothing a converter writes: both bases generate, and so does a graph whose internal
    scale and zero point were changed consistently (its lowered form still computes the reference's bytes)."""

    def rescale(m, sg):  # the last CONV_2D's output and the DEPTH_TO_SPACE after it (same quantization)
        for op in (ops_of(m, sg, "CONV_2D")[-1], ops_of(m, sg, "DEPTH_TO_SPACE")[-1]):
            q = sg.tensors[op.outputs[0]].quantization
            q.scale = q.scale * np.float32(1.5)
            q.zeroPoint = q.zeroPoint + 3

    for graph, data in [*bases.items(), ("subpixel", edit_tflite(bases["subpixel"], rescale))]:
        path = tmp_path / f"ok_{graph}_int8_b1.tflite"
        path.write_bytes(data)
        rc, err = _codegen(path, tmp_path / "out", capsys)
        assert rc == 0, err
        g = load_graph(path)
        plan, ref = lower(g, name="m", graph_kind=graph), IntegerReference(g)
        for z in np.random.default_rng(1).integers(-128, 128, (4, 1, plan.input_size)).astype(np.int8):
            np.testing.assert_array_equal(run_plan(plan, z), ref.run(z))


def test_prior_of_another_latent_size_is_refused():
    assert check_prior(None, 3).shape == (3, 3)
    with pytest.raises(VaeEdgeError, match="latent size is 2"):
        check_prior(np.eye(3), 2)
    with pytest.raises(VaeEdgeError):
        check_prior(np.full((2, 2), np.nan), 2)
    assert ACC_LIMIT < 2**31


def _old_pair(bases, tmp_path, capsys):
    """A first generation into out/: the pair a failed second generation must leave as it was."""
    first = tmp_path / "first_transpose_int8_b1.tflite"
    first.write_bytes(bases["transpose"])
    out = tmp_path / "out"
    assert _codegen(first, out, capsys)[0] == 0
    second = tmp_path / "second_transpose_int8_b1.tflite"
    second.write_bytes(edit_tflite(bases["transpose"], _zero_point(5)))  # valid, other C
    return out, second, {p.name: p.read_bytes() for p in out.iterdir()}


def test_full_disk_while_writing_the_source_keeps_the_old_pair(bases, tmp_path, capsys, monkeypatch):
    out, second, before = _old_pair(bases, tmp_path, capsys)
    assert sorted(before) == ["hostile_decoder.c", "hostile_decoder.h"]
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the header's temporary is written; the source's hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    rc, err = _codegen(second, out, capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "disk is full" in err[0], err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no new .h, no temporary left


def test_failed_second_rename_puts_the_old_header_back(bases, tmp_path, capsys, monkeypatch):
    out, second, before = _old_pair(bases, tmp_path, capsys)
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if str(dst).endswith("_decoder.c"):
            raise OSError(errno.EIO, "Input/output error", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    rc, err = _codegen(second, out, capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_success_replaces_both_files(bases, tmp_path, capsys):
    out, second, before = _old_pair(bases, tmp_path, capsys)
    assert _codegen(second, out, capsys)[0] == 0
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(after) == sorted(before)
    assert all(after[k] != before[k] for k in before)
