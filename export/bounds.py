"""Validation bounds that follow from each format's arithmetic, computed per model from its own weights.

    bounds = DecoderBounds(decoder, subpixel_decoder_from(decoder, cfg), z_val, calibration, LOGIT_CLIP)
    bounds.tolerance(spec)        # Tolerance(max_abs=…) for float32/float16, (mean_abs=…) for the int8 formats
    bounds.subpixel_rewrite()     # the sub-pixel graph against the transposed one, both in Keras float32

Float formats get a bound that a correct conversion cannot exceed. Their artifacts differ from the Keras decoder
only by rounding: of the stored weights (float16: known exactly, so its effect is computed exactly, in float64),
and of every sum of products, on both sides. The sums are bounded by a *running error bound*, element by element
on the validation latents, through the model's own layers (:func:`rounding_bound`):

    a = W x + b computed as â = fl(W x̂ + b), |x̂ − x| ≤ e:   |â − a| ≤ |W| e + γ(n+1) (|W| (|x| + e) + |b|)
    γ(m) = m u / (1 − m u), u = 2⁻²⁴;  ReLU and sigmoid: the exact image of the interval [a − ε, a + ε]

``n`` is the layer's fan-in as written (kernel taps × input channels; the zero taps of a sub-pixel kernel add
exact zeros). γ covers any summation order, blocking or fused multiply-add (Higham, *Accuracy and Stability of
Numerical Algorithms*, §3.1), so every kernel that sums products (GEMM, im2col, XNNPACK, oneDNN's direct
convolutions; not Winograd or FFT) meets it. The bound is worst-case, so 10²–10⁴ × the errors seen, yet a weight
off by 3% or a changed bias exceeds it (tests/test_tolerance.py).

The int8 formats round thousands of values by up to half an int8 step; their worst case is near the whole pixel
range and bounds nothing. They get the mean abs error the quantization-noise model predicts
(:func:`noise_mean_abs`) times ``runtime.vocab.NOISE_MODEL_MARGIN``, measured over 52 decoders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.vocab import (
    NOISE_MODEL_MARGIN,
    SIGMOID_KERNEL_ABS_ERROR,
    UNIT_ROUNDOFF,
    Arithmetic,
    ArtifactSpec,
    Format,
    Graph,
    Precision,
    Tolerance,
)


def gamma(n: int, u: float) -> float:
    """Higham's γ(n) = n u / (1 − n u): the relative error bound of an n-term sum of products in precision u."""
    if n * u >= 1:
        raise ValueError(f"γ({n}) is unbounded at unit roundoff {u:g}")
    return n * u / (1 - n * u)


def round_to_float16(w: np.ndarray) -> np.ndarray:
    return np.asarray(w, np.float32).astype(np.float16).astype(np.float64)


@dataclass(frozen=True)
class _Linear:
    """One layer as float64 callables: ``apply(kernel, x)`` is the layer's linear map without bias."""

    name: str
    kernel: np.ndarray
    bias: np.ndarray
    fan_in: int
    activation: str
    apply: object  # (kernel, x) -> y


@dataclass(frozen=True)
class _Move:
    """A layer that only moves values (Reshape, ZeroPadding2D, DepthToSpace): applied to values and bounds alike."""

    name: str
    apply: object  # x -> y


def _float64_clone(layer, **overrides):
    return type(layer).from_config({**layer.get_config(), "dtype": "float64", **overrides})


def layer_chain(model) -> list:
    """The model's layers after its input, each as a :class:`_Linear` or :class:`_Move` running in float64.

    Only chains of Dense, Conv2D, Conv2DTranspose (with ``relu`` or no activation), data-movement layers and a
    final sigmoid are understood; anything else raises, so a new layer cannot silently escape the bound.
    """
    out = []
    for layer in model.layers[1:]:
        kind = type(layer).__name__
        if kind in ("Dense", "Conv2D", "Conv2DTranspose"):
            kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
            activation = layer.get_config()["activation"]
            if activation not in ("relu", "linear"):
                raise ValueError(f"{layer.name}: activation {activation!r} has no error bound here")
            clone = _float64_clone(layer, activation="linear", use_bias=False)
            clone.build(tuple(layer.input.shape))
            if kind == "Dense":
                fan_in = kernel.shape[0]
            elif kind == "Conv2D":  # (kh, kw, in, out)
                fan_in = kernel.shape[0] * kernel.shape[1] * kernel.shape[2]
            else:  # Conv2DTranspose (kh, kw, out, in)
                fan_in = kernel.shape[0] * kernel.shape[1] * kernel.shape[3]

            def apply(k, x, clone=clone):
                clone.kernel.assign(k)
                return np.asarray(clone(x), np.float64)

            out.append(_Linear(layer.name, kernel, bias, fan_in, activation, apply))
        elif kind in ("Reshape", "ZeroPadding2D", "DepthToSpace"):
            clone = _float64_clone(layer)
            out.append(_Move(layer.name, lambda x, clone=clone: np.asarray(clone(x), np.float64)))
        elif kind == "Activation" and layer.get_config()["activation"] == "sigmoid":
            out.append(_Move(layer.name, None))  # the final sigmoid, handled by the caller
        else:
            raise ValueError(f"{layer.name}: a {kind} layer has no error bound here")
    if not out or out[-1].apply is not None:
        raise ValueError("the model must end with a sigmoid")
    return out


def _interval_error(f, a: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """max |f(â) − f(a)| over |â − a| ≤ ε for a monotone f."""
    fa = f(a)
    return np.maximum(f(a + eps) - fa, fa - f(a - eps))


def _relu(a):
    return np.maximum(a, 0.0)


def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))


@dataclass
class Forward:
    """The exact (float64) pass of a decoder on latents ``z``: every linear layer's input, then the logits."""

    chain: list
    inputs: list  # float64 input of each _Linear layer, in order
    logits: np.ndarray

    @property
    def pixels(self) -> np.ndarray:
        return _sigmoid(self.logits)


def forward(model, z: np.ndarray, chain: list | None = None, weights=None) -> Forward:
    """The decoder in float64 with its float32 weights (or ``weights(kernel)`` of them): the exact value the
    rounded artifacts approximate."""
    chain = chain or layer_chain(model)
    weights = weights or (lambda w: w)
    x = np.asarray(z, np.float64)
    inputs = []
    for layer in chain:
        if isinstance(layer, _Linear):
            inputs.append(x)
            x = layer.apply(weights(layer.kernel), x) + weights(layer.bias)
            if layer.activation == "relu":
                x = _relu(x)
        elif layer.apply is not None:
            x = layer.apply(x)
    return Forward(chain, inputs, x)


def _batch_max_abs(x: np.ndarray, batch: int) -> np.ndarray:
    """max |x| over each static-batch chunk the rows are run in, one value per row (shape (rows, 1, …))."""
    rows = len(x)
    flat = np.abs(x.reshape(rows, -1)).max(axis=1)
    chunks = -(-rows // batch)
    padded = np.concatenate([flat, np.repeat(flat[-1:], chunks * batch - rows)])
    per_chunk = padded.reshape(chunks, batch).max(axis=1)
    return np.repeat(per_chunk, batch)[:rows].reshape((rows,) + (1,) * (x.ndim - 1))


def rounding_bound(
    fw: Forward, weights=None, roundoff: float = UNIT_ROUNDOFF[Precision.FLOAT32]
) -> np.ndarray:
    """Per-pixel bound on |pixels computed in floating point − ``fw``'s exact pixels|, where ``fw`` was run
    with ``weights(W)`` (the stored weights) and only the sums of products round, at unit roundoff ``roundoff``.
    """
    weights = weights or (lambda w: w)
    err = np.zeros_like(fw.inputs[0])
    i = 0
    for layer in fw.chain:
        if isinstance(layer, _Move):
            if layer.apply is not None:
                err = layer.apply(err)
            continue
        x = fw.inputs[i]
        kernel, bias = weights(layer.kernel), weights(layer.bias)
        k_abs = np.abs(kernel)
        a = layer.apply(kernel, x) + bias
        eps = layer.apply(k_abs, err) + gamma(layer.fan_in + 1, roundoff) * (
            layer.apply(k_abs, np.abs(x) + err) + np.abs(bias)
        )
        err = _interval_error(_relu, a, eps) if layer.activation == "relu" else eps
        i += 1
    return _interval_error(_sigmoid, fw.logits, err) + SIGMOID_KERNEL_ABS_ERROR


def calibrated_ranges(model, calibration: np.ndarray, logit_clip: float) -> list[tuple[float, float]]:
    """The int8 range of each linear layer's input and of the logits, as the converters calibrate them: the
    min and max over the calibration latents, widened to hold 0, the logits' cut to ±``logit_clip``.

    The same for both graphs: the sub-pixel graph's tensors are the transposed graph's values, re-ordered,
    with zeros padded in."""
    fw = forward(model, calibration)
    out = [(min(0.0, float(x.min())), max(0.0, float(x.max()))) for x in fw.inputs]
    lo, hi = float(fw.logits.min()), float(fw.logits.max())
    out.append((min(0.0, max(lo, -logit_clip)), max(0.0, min(hi, logit_clip))))
    return out


def noise_mean_abs(
    fw: Forward, arithmetic: Arithmetic, *, batch: int = 1, ranges: list | None = None
) -> float:
    """The mean absolute pixel error the int8 formats' rounding *predicts* (the quantization-noise model).

    Worst-case alignment of thousands of int8 roundings never happens, so for int8 the worst-case bound is
    near the whole pixel range. Instead each rounding is taken as independent noise, uniform on ± half its
    step (variance h² / 3): weights (half of max|W| / 127 per tensor) and each layer's input (dynamic: half of
    its batch's max|x| / 127; static: half of its calibrated step, plus the clipped distance as a fixed error).
    Variances propagate linearly — through W², the ReLU's slope (1 where the exact pre-activation is positive)
    and the sigmoid's σ'(a)² — and a pixel with standard deviation s has mean absolute error s √(2/π).
    """
    var = np.zeros_like(fw.inputs[0])
    i = 0
    for layer in fw.chain:
        if isinstance(layer, _Move):
            if layer.apply is not None:
                var = layer.apply(var)
            continue
        x = fw.inputs[i]
        rng = ranges[i] if ranges else None
        if arithmetic.activations is Precision.DYNAMIC_INT8:
            var = var + (_batch_max_abs(x, batch) / 127 / 2) ** 2 / 3
        elif arithmetic.activations is Precision.INT8:
            lo, hi = rng
            clipped = np.maximum(x - hi, 0.0) + np.maximum(lo - x, 0.0)
            var = var + ((hi - lo) / 255 / 2) ** 2 / 3 + clipped**2
        w_half_step = np.abs(layer.kernel).max() / 127 / 2
        a = layer.apply(layer.kernel, x) + layer.bias
        var = layer.apply(layer.kernel**2, var) + layer.apply(
            np.full_like(layer.kernel, w_half_step**2 / 3), x**2
        )
        if layer.activation == "relu":
            var = np.where(a > 0, var, 0.0)
        i += 1
    if arithmetic.activations is Precision.INT8:
        lo, hi = ranges[-1]
        clipped = np.maximum(fw.logits - hi, 0.0) + np.maximum(lo - fw.logits, 0.0)
        var = var + ((hi - lo) / 255 / 2) ** 2 / 3 + clipped**2
    p = fw.pixels
    slope = p * (1 - p)
    return float(np.mean(np.sqrt(2 / np.pi * var) * slope))


class DecoderBounds:
    """The tolerance of each artifact of one decoder, derived from its weights on the validation latents ``z``.

    float32 and float16 (a bound no correct conversion can exceed, checked on the max abs error):
        |artifact − Keras| ≤ |exact(Ŵ) − exact(W)|     the stored weights' rounding, computed exactly
                            + R(artifact's graph, Ŵ)    its float32 sums (:func:`rounding_bound`)
                            + R(transposed graph, W)    the Keras decoder's own float32 sums
    The sub-pixel rewrite (Keras against Keras): R(sub-pixel, W) + R(transposed, W).
    dynamic-range int8 and int8 (checked on the mean abs error): :func:`noise_mean_abs` × the margin of
    ``runtime.vocab.NOISE_MODEL_MARGIN``.
    """

    def __init__(self, decoder, subpixel, z: np.ndarray, calibration: np.ndarray, logit_clip: float):
        self.models = {Graph.TRANSPOSE: decoder, Graph.SUBPIXEL: subpixel}
        self.z = np.asarray(z, np.float64)
        self.exact = {g: forward(m, self.z) for g, m in self.models.items()}
        self.ranges = calibrated_ranges(decoder, calibration, logit_clip)
        # int8 ONNX sets the logits' range to ±logit_clip outright (convert.quantize_onnx), not ∩ calibrated.
        self.onnx_ranges = [*self.ranges[:-1], (-logit_clip, logit_clip)]
        self.reference = rounding_bound(self.exact[Graph.TRANSPOSE])
        self._cache: dict = {}

    def subpixel_rewrite(self) -> Tolerance:
        return Tolerance(max_abs=float((rounding_bound(self.exact[Graph.SUBPIXEL]) + self.reference).max()))

    def tolerance(self, spec: ArtifactSpec) -> Tolerance:
        dynamic = spec.precision is Precision.DYNAMIC_INT8
        key = (spec.format, spec.graph, spec.precision, spec.batch if dynamic else 0)
        if key not in self._cache:
            self._cache[key] = self._tolerance(spec)
        return self._cache[key]

    def _tolerance(self, spec: ArtifactSpec) -> Tolerance:
        exact = self.exact[spec.graph]
        if spec.precision is Precision.FLOAT32:
            return Tolerance(max_abs=float((rounding_bound(exact) + self.reference).max()))
        if spec.precision is Precision.FLOAT16:
            stored = forward(self.models[spec.graph], self.z, chain=exact.chain, weights=round_to_float16)
            bound = (
                np.abs(stored.pixels - self.exact[Graph.TRANSPOSE].pixels)
                + rounding_bound(stored, weights=round_to_float16)
                + self.reference
            )
            return Tolerance(max_abs=float(bound.max()))
        ranges = self.onnx_ranges if spec.format is Format.ONNX else self.ranges
        predicted = noise_mean_abs(exact, spec.arithmetic, batch=spec.batch, ranges=ranges)
        return Tolerance(mean_abs=NOISE_MODEL_MARGIN * predicted)
