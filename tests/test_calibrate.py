"""export/calibrate.py: the least-error int8 range of an activation, and an int8 decoder converted with it.

The clip search is checked on values whose answer is known (a bulk plus one outlier), and the converted decoder
on what the method promises: hidden activations get ranges no wider than min–max, the input and the logits keep
their own rules, and the int8 decoder's error against its float model on the calibration latents is smaller.
"""

from __future__ import annotations

import numpy as np
import pytest

from export import calibrate, convert


def _hist(values: np.ndarray, lo: float, hi: float):
    counts, edges = np.histogram(values, bins=calibrate.HISTOGRAM_BINS, range=(lo, hi))
    return 0.5 * (edges[:-1] + edges[1:]), counts


def test_a_long_tail_no_longer_sets_the_step():
    values = np.random.default_rng(0).lognormal(0.0, 1.0, 200_000)  # a long right tail, as ReLU maps have
    top = float(values.max())
    lo, hi = calibrate.mse_range(values, 0.0, top)
    assert lo == 0.0 and hi < 0.9 * top  # the rare largest values are clipped
    centers, counts = _hist(values, 0.0, top)
    assert calibrate.int8_error(centers, counts, lo, hi) < 0.85 * calibrate.int8_error(
        centers, counts, 0.0, top
    )


def test_a_range_without_outliers_is_kept_and_negative_sides_are_searched():
    values = np.random.default_rng(1).uniform(-2.0, 2.0, 100_000)
    lo, hi = calibrate.mse_range(values, -2.0, 2.0)
    assert -2.0 <= lo <= -1.9 and 1.9 <= hi <= 2.0  # uniform values: clipping only adds error
    assert calibrate.mse_range(np.zeros(10), 0.0, 0.0) == (0.0, 0.0)


@pytest.fixture(scope="module")
def tiny_decoder():
    import keras

    keras.utils.set_random_seed(3)
    z = keras.Input((2,), batch_size=8)
    x = keras.layers.Dense(7 * 7 * 4, activation="relu")(z)
    x = keras.layers.Reshape((7, 7, 4))(x)
    x = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same")(x)
    out = keras.layers.Activation("sigmoid")(x)
    model = keras.Model(z, out)
    calib = np.random.default_rng(4).standard_normal((400, 2)).astype(np.float32)
    return model, calib


def _quant(model_bytes: bytes) -> list[tuple[str, float, int]]:
    from tensorflow.lite.tools import flatbuffer_utils

    sub = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes)).subgraphs[0]
    return [
        (t.name.decode(), float(t.quantization.scale[0]), int(t.quantization.zeroPoint[0]))
        for t in sub.tensors
        if t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale) == 1
    ]


def test_quantile_ranges_hold_zero_and_stay_inside_the_calibrated_one():
    values = np.random.default_rng(2).uniform(0.0, 10.0, 100_000)
    lo, hi = calibrate.percentile_range(values, 0.0, 10.0, 99.9)
    assert lo == 0.0 and 9.97 < hi < 9.999
    lo, hi = calibrate.percentile_range(values - 5.0, -5.0, 5.0, 99.0)
    assert -5.0 < lo < -4.85 and 4.85 < hi < 5.0
    assert calibrate.RangeMethod("p99.9").quantile == 99.9 and calibrate.RangeMethod.MSE.quantile is None


@pytest.mark.parametrize("method", [calibrate.RangeMethod.MSE, calibrate.RangeMethod.P99_9])
def test_narrowed_ranges_narrow_hidden_activations_and_lower_the_error(tiny_decoder, method):
    import tensorflow as tf

    model, calib = tiny_decoder
    plain = convert.to_tflite(model, "int8", "int8", calib, ranges=calibrate.RangeMethod.MINMAX)
    narrowed = convert.to_tflite(model, "int8", "int8", calib, ranges=method)
    a, b = _quant(plain), _quant(narrowed)
    assert [n for n, _, _ in a] == [n for n, _, _ in b]  # the same graph, only ranges differ
    pairs = list(zip(a, b, strict=True))
    assert any(sb < sa * 0.999 for (_, sa, _), (_, sb, _) in pairs), "no hidden activation range was narrowed"
    assert all(sb <= sa * 1.0001 for (_, sa, _), (_, sb, _) in pairs)  # never wider than min-max

    def inputs_and_outputs(m):
        interp = tf.lite.Interpreter(model_content=m)
        return interp.get_input_details()[0]["quantization"], interp.get_output_details()[0]["quantization"]

    assert inputs_and_outputs(plain) == inputs_and_outputs(narrowed)  # latent clip and logit clip rule these

    def error(m):
        interp = tf.lite.Interpreter(model_content=m)
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        (si, zi), (so, zo) = inp["quantization"], out["quantization"]
        errs = []
        for c in convert.batches_of(calib, 8):
            interp.set_tensor(inp["index"], np.clip(np.round(c / si) + zi, -128, 127).astype(np.int8))
            interp.invoke()
            got = (interp.get_tensor(out["index"]).astype(np.float64) - zo) * so
            errs.append(np.abs(got - np.asarray(model(c))))
        return float(np.mean(errs))

    if method is calibrate.RangeMethod.MSE:  # what MSE minimises per tensor; quantiles promise only the clip
        assert error(narrowed) < error(plain)


def test_narrowed_ranges_keep_one_quantization_across_pad_reshape_and_depth_to_space(tmp_path):
    """The sub-pixel graph's PAD, RESHAPE and DEPTH_TO_SPACE move values unchanged: TFLite's kernels and the C
    generator need equal scale and zero point on both sides. Narrowed ranges differ across such an op (PAD's
    output holds the padding's zeros too); the quantizer must still give both sides one quantization, and the C
    generator must accept the result."""
    import keras

    from firmware_sim.codegen import checks
    from firmware_sim.graph import load_graph
    from train.model import build_subpixel_decoder
    from train.registry import VAEConfig

    keras.utils.set_random_seed(5)
    model = build_subpixel_decoder(VAEConfig("tiny", 2, conv_filters=(2, 4)), batch_size=1)
    calib = np.random.default_rng(6).standard_normal((200, 2)).astype(np.float32)
    path = tmp_path / "decoder_subpixel_int8_b1.tflite"
    int8 = convert.to_tflite(model, "int8", "int8", calib, ranges=calibrate.RangeMethod.P99_9)
    path.write_bytes(convert.int8_decoder_head(int8, "int8"))  # int8 logits out, as export writes it
    graph = load_graph(path)
    moving = [op for op in graph.ops if op.kind in ("RESHAPE", "PAD", "DEPTH_TO_SPACE")]
    assert sorted({op.kind for op in moving}) == ["DEPTH_TO_SPACE", "PAD", "RESHAPE"]
    for op in moving:
        x, out = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        assert np.array_equal(x.scale, out.scale) and np.array_equal(x.zero_point, out.zero_point), op.kind
    checks.check_graph(graph)  # the generator's own refusal, the one CI met
