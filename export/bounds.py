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

The same terms cover the layers of a decoder brought by the user (export/byom.py), whose graph is walked in
topological order: depthwise convolutions (fan-in kh·kw), Add (γ(k−1) over the k perturbed inputs),
Concatenate and data movement (exact), relu6 and LeakyReLU (the image of the interval, plus α's product), a
BatchNormalization of the Keras reference (γ(16) over its per-channel affine map: the artifacts fold it), and a
tanh or linear output besides the sigmoid.

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

from runtime.manifest import NONE, SIGMOID, TANH
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

# The decoder's graph as float64 steps moved to export/chain.py; all its public names stay importable from here,
# those this module does not use too (export/byom.py imports batch_norm_affine, graph_nodes and layer_chain).
from .chain import (  # noqa: F401
    Chain,
    _Activation,
    _Affine,
    _identity,
    _Linear,
    _Merge,
    _Move,
    _relu,
    _sigmoid,
    batch_norm_affine,
    graph_nodes,
    hidden_activation,
    layer_chain,
)


def gamma(n: int, u: float) -> float:
    """Higham's γ(n) = n u / (1 − n u): the relative error bound of an n-term sum of products in precision u."""
    if n * u >= 1:
        raise ValueError(f"γ({n}) is unbounded at unit roundoff {u:g}")
    return n * u / (1 - n * u)


def round_to_float16(w: np.ndarray) -> np.ndarray:
    return np.asarray(w, np.float32).astype(np.float16).astype(np.float64)


# The float tanh kernels against float64 on 400,000 float32 inputs over [-20, 20]: at most 3.0e-7 (TFLite),
# 2.8e-7 (Keras), 2.6e-7 (ONNX Runtime), 6.0e-8 (numpy). 2^-19 (1.9e-6) is a margin of 6, as for the sigmoid.
TANH_KERNEL_ABS_ERROR = 2.0**-19
# A BatchNormalization layer of the Keras reference computes x·a + (β − μ·a) with a = γ·rsqrt(σ² + ε), or an
# equivalent order (oneDNN fuses it): about eight roundings, rsqrt's few ulps among them. γ(16) covers them twice.
BATCH_NORM_ROUNDINGS = 16

OUTPUT_FUNCTIONS = {SIGMOID: _sigmoid, TANH: np.tanh, NONE: _identity}
OUTPUT_KERNEL_ERRORS = {SIGMOID: SIGMOID_KERNEL_ABS_ERROR, TANH: TANH_KERNEL_ABS_ERROR, NONE: 0.0}


def _output_function(activation: str):
    return OUTPUT_FUNCTIONS[activation]


def _interval_error(f, a: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """max |f(â) − f(a)| over |â − a| ≤ ε for a monotone f."""
    fa = f(a)
    return np.maximum(f(a + eps) - fa, fa - f(a - eps))


@dataclass
class Forward:
    """The exact (float64) pass of a decoder on latents ``z``: each recorded input (:class:`Chain`), in order,
    then the logits (the output before its activation)."""

    chain: Chain
    inputs: list  # float64, one per quantized input (Chain.slots)
    logits: np.ndarray
    latents: np.ndarray | None = None

    @property
    def activation(self) -> str:
        return self.chain.activation

    @property
    def pixels(self) -> np.ndarray:
        return _output_function(self.chain.activation)(self.logits)


def _consumers(chain: Chain) -> dict[int, int]:
    count: dict[int, int] = {}
    for step in chain:
        for t in step.inputs:
            count[t] = count.get(t, 0) + 1
    return count


def forward(model, z: np.ndarray, chain: Chain | None = None, weights=None) -> Forward:
    """The decoder in float64 with its float32 weights (or ``weights(kernel)`` of them): the exact value the
    rounded artifacts approximate."""
    chain = chain or layer_chain(model)
    weights = weights or (lambda w: w)
    x = np.asarray(z, np.float64)
    values, left = {chain.input: x}, _consumers(chain)
    inputs = [None] * chain.slots
    for step in chain:
        args = [values[t] for t in step.inputs]
        for t in step.inputs:  # drop a tensor after its last reader: a DAG's values would fill memory
            left[t] -= 1
            if left[t] == 0 and t != chain.output:
                values.pop(t)
        for slot, arg in zip(getattr(step, "slots", ()), args, strict=False):
            inputs[slot] = arg
        if isinstance(step, _Linear):
            y = step.apply(weights(step.kernel), args[0]) + weights(step.bias)
            if step.activation == "relu":
                y = _relu(y)
            elif step.act is not None:
                y = step.act.f(y)
        elif isinstance(step, _Move):
            y = args[0] if step.apply is None else step.apply(args[0])
        elif isinstance(step, _Affine):
            y = args[0] * step.scale + step.shift
        elif isinstance(step, _Merge):
            y = sum(args[1:], args[0]) if step.kind == "add" else np.concatenate(args, axis=step.axis)
        else:
            y = step.act.f(args[0])
        values[step.output] = y
    return Forward(chain, inputs, values[chain.output], x)


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
    chain = fw.chain
    errs = {chain.input: np.zeros_like(fw.latents)}
    for step in chain:
        err_in = [errs[t] for t in step.inputs]
        if isinstance(step, _Move):
            err = err_in[0] if step.apply is None else step.apply(err_in[0])
        elif isinstance(step, _Linear):
            x, e = fw.inputs[step.slots[0]], err_in[0]
            kernel, bias = weights(step.kernel), weights(step.bias)
            k_abs = np.abs(kernel)
            a = step.apply(kernel, x) + bias
            eps = step.apply(k_abs, e) + gamma(step.fan_in + 1, roundoff) * (
                step.apply(k_abs, np.abs(x) + e) + np.abs(bias)
            )
            if step.activation == "relu":
                err = _interval_error(_relu, a, eps)
            elif step.act is not None:
                err = _act_error(step.act, a, eps, roundoff)
            else:
                err = eps
        elif isinstance(step, _Affine):
            x, e = fw.inputs[step.slots[0]], err_in[0]
            s_abs = np.abs(step.scale)
            err = s_abs * e + gamma(BATCH_NORM_ROUNDINGS, roundoff) * (
                s_abs * (np.abs(x) + e) + step.magnitude
            )
        elif isinstance(step, _Merge):
            if step.kind == "concat":
                err = np.concatenate(err_in, axis=step.axis)
            else:  # n − 1 float additions of the perturbed inputs
                xs = [fw.inputs[s] for s in step.slots]
                total = sum(
                    (np.abs(v) + e for v, e in zip(xs, err_in, strict=True)), np.zeros_like(err_in[0])
                )
                err = sum(err_in[1:], err_in[0]) + gamma(len(xs) - 1, roundoff) * total
        else:
            err = _act_error(step.act, fw.inputs[step.slots[0]], err_in[0], roundoff)
        errs[step.output] = err
    err = errs[chain.output]
    f = _output_function(chain.activation)
    return _interval_error(f, fw.logits, err) + OUTPUT_KERNEL_ERRORS[chain.activation]


def _act_error(act: _Activation, a, eps, roundoff):
    """The image of [a − ε, a + ε] under ``act``, plus leaky_relu's rounded product α·â."""
    err = _interval_error(act.f, a, eps)
    if act.alpha:
        err = err + gamma(1, roundoff) * (np.abs(act.f(a)) + eps)
    return err


def calibrated_ranges(model, calibration: np.ndarray, logit_clip: float) -> list[tuple[float, float]]:
    """The int8 range of each quantized input and of the logits, as the converters calibrate them: the min and
    max over the calibration latents, widened to hold 0, the logits' cut to ±``logit_clip`` when the output is
    a sigmoid (export/convert.py narrows the LOGISTIC input only).

    The same for both of the project's graphs: the sub-pixel graph's tensors are the transposed graph's values,
    re-ordered, with zeros padded in."""
    fw = forward(model, calibration)
    out = [(min(0.0, float(x.min())), max(0.0, float(x.max()))) for x in fw.inputs]
    lo, hi = float(fw.logits.min()), float(fw.logits.max())
    if fw.activation != SIGMOID:
        out.append((min(0.0, lo), max(0.0, hi)))
        return out
    out.append((min(0.0, max(lo, -logit_clip)), max(0.0, min(hi, logit_clip))))
    return out


def _input_noise(var, x, arithmetic: Arithmetic, batch: int, rng):
    """``var`` plus the variance of rounding ``x`` to int8 as the artifact quantizes it."""
    if arithmetic.activations is Precision.DYNAMIC_INT8:
        return var + (_batch_max_abs(x, batch) / 127 / 2) ** 2 / 3
    if arithmetic.activations is Precision.INT8:
        lo, hi = rng
        clipped = np.maximum(x - hi, 0.0) + np.maximum(lo - x, 0.0)
        return var + ((hi - lo) / 255 / 2) ** 2 / 3 + clipped**2
    return var


def _slope_squared(act: _Activation, a, var):
    inside = act.slope_mask(a)
    if act.alpha:
        return np.where(inside, var, act.alpha**2 * var)
    return np.where(inside, var, 0.0)


def noise_mean_abs(
    fw: Forward, arithmetic: Arithmetic, *, batch: int = 1, ranges: list | None = None
) -> float:
    """The mean absolute pixel error the int8 formats' rounding *predicts* (the quantization-noise model).

    Worst-case alignment of thousands of int8 roundings never happens, so for int8 the worst-case bound is
    near the whole pixel range. Instead each rounding is taken as independent noise, uniform on ± half its
    step (variance h² / 3): weights (half of max|W| / 127 per tensor) and each quantized input (dynamic: half
    of its batch's max|x| / 127; static: half of its calibrated step, plus the clipped distance as a fixed
    error). Variances propagate linearly — through W², the activations' slopes (1 where the exact
    pre-activation is positive for ReLU) and the output activation's (σ'(a)², tanh'(a)²); a tanh output is
    itself an int8 tensor of step 1/128 in the static formats; and a pixel with standard deviation s has mean
    absolute error s √(2/π).
    """
    chain = fw.chain
    variances = {chain.input: np.zeros_like(fw.latents)}
    for step in chain:
        var_in = [variances[t] for t in step.inputs]
        if isinstance(step, _Move):
            var = var_in[0] if step.apply is None else step.apply(var_in[0])
        elif isinstance(step, _Linear):
            x = fw.inputs[step.slots[0]]
            rng = ranges[step.slots[0]] if ranges else None
            var = _input_noise(var_in[0], x, arithmetic, batch, rng)
            w_half_step = np.abs(step.kernel).max() / 127 / 2
            a = step.apply(step.kernel, x) + step.bias
            var = step.apply(step.kernel**2, var) + step.apply(
                np.full_like(step.kernel, w_half_step**2 / 3), x**2
            )
            if step.activation == "relu":
                var = np.where(a > 0, var, 0.0)
            elif step.act is not None:
                var = _slope_squared(step.act, a, var)
        elif isinstance(step, _Affine):
            var = var_in[0] * step.scale**2
        elif isinstance(step, _Merge):
            noisy = [
                _input_noise(v, fw.inputs[s], arithmetic, batch, ranges[s] if ranges else None)
                for v, s in zip(var_in, step.slots, strict=True)
            ]
            var = sum(noisy[1:], noisy[0]) if step.kind == "add" else np.concatenate(noisy, axis=step.axis)
        else:
            x = fw.inputs[step.slots[0]]
            var = _input_noise(var_in[0], x, arithmetic, batch, ranges[step.slots[0]] if ranges else None)
            var = _slope_squared(step.act, x, var)
        variances[step.output] = var
    var = variances[chain.output]
    if arithmetic.activations is Precision.INT8:
        lo, hi = ranges[-1]
        clipped = np.maximum(fw.logits - hi, 0.0) + np.maximum(lo - fw.logits, 0.0)
        var = var + ((hi - lo) / 255 / 2) ** 2 / 3 + clipped**2
    if chain.activation == SIGMOID:
        p = fw.pixels
        slope = p * (1 - p)
        return float(np.mean(np.sqrt(2 / np.pi * var) * slope))
    if chain.activation == TANH:
        var = var * (1 - fw.pixels**2) ** 2
        if arithmetic.activations is Precision.INT8:
            var = var + (1 / 128 / 2) ** 2 / 3  # the int8 tanh output: scale 1/128
    return float(np.mean(np.sqrt(2 / np.pi * var)))


class DecoderBounds:
    """The tolerance of each artifact of one decoder, derived from its weights on the validation latents ``z``.

    float32 and float16 (a bound no correct conversion can exceed, checked on the max abs error):
        |artifact − Keras| ≤ |exact(Ŵ) − exact(W)|     the stored weights' rounding, computed exactly
                            + R(artifact's graph, Ŵ)    its float32 sums (:func:`rounding_bound`)
                            + R(Keras decoder, W)       the Keras decoder's own float32 sums
    The sub-pixel rewrite (Keras against Keras): R(sub-pixel, W) + R(transposed, W).
    dynamic-range int8 and int8 (checked on the mean abs error): :func:`noise_mean_abs` × the margin of
    ``runtime.vocab.NOISE_MODEL_MARGIN``.

    ``graphs`` (instead of ``subpixel``): the model each graph's artifacts are converted from, when that is not
    ``decoder`` itself (a decoder brought by the user is rebuilt: export/byom.py). A graph in ``inexact`` was
    rebuilt with rounded weights (BatchNormalization folded): its float bounds add |exact(rebuilt) − exact(W)|,
    computed exactly like float16's stored weights.
    """

    def __init__(
        self,
        decoder,
        subpixel,
        z: np.ndarray,
        calibration: np.ndarray,
        logit_clip: float,
        *,
        graphs: dict | None = None,
        inexact: frozenset | set | tuple = (),
    ):
        self.models = (
            dict(graphs) if graphs is not None else {Graph.TRANSPOSE: decoder, Graph.SUBPIXEL: subpixel}
        )
        self.z = np.asarray(z, np.float64)
        self.exact = {g: forward(m, self.z) for g, m in self.models.items()}
        own = [self.exact[g] for g, m in self.models.items() if m is decoder]
        self.original = own[0] if own else forward(decoder, self.z)  # the Keras decoder, exactly
        self.activation = self.original.activation
        self.inexact = frozenset(inexact)
        self.ranges = calibrated_ranges(self.models.get(Graph.TRANSPOSE, decoder), calibration, logit_clip)
        # int8 ONNX sets the logits' range to ±logit_clip outright (convert.quantize_onnx), not ∩ calibrated.
        self.onnx_ranges = (
            [*self.ranges[:-1], (-logit_clip, logit_clip)] if self.activation == SIGMOID else self.ranges
        )
        self.reference = rounding_bound(self.original)
        self._cache: dict = {}

    def _gap(self, graph: Graph, bound: np.ndarray) -> np.ndarray:
        """``bound`` plus the rebuilt graph's exact distance from the decoder (only for an ``inexact`` one)."""
        if graph not in self.inexact:
            return bound
        return bound + np.abs(self.exact[graph].pixels - self.original.pixels)

    def rewrite(self, graph: Graph) -> Tolerance:
        """The bound on |graph's Keras model − the Keras decoder|, both in float32."""
        return Tolerance(
            max_abs=float(self._gap(graph, rounding_bound(self.exact[graph]) + self.reference).max())
        )

    def subpixel_rewrite(self) -> Tolerance:
        return self.rewrite(Graph.SUBPIXEL)

    def tolerance(self, spec: ArtifactSpec) -> Tolerance:
        dynamic = spec.precision is Precision.DYNAMIC_INT8
        key = (spec.format, spec.graph, spec.precision, spec.batch if dynamic else 0)
        if key not in self._cache:
            self._cache[key] = self._tolerance(spec)
        return self._cache[key]

    def _tolerance(self, spec: ArtifactSpec) -> Tolerance:
        exact = self.exact[spec.graph]
        if spec.precision is Precision.FLOAT32:
            return Tolerance(
                max_abs=float(self._gap(spec.graph, rounding_bound(exact) + self.reference).max())
            )
        if spec.precision is Precision.FLOAT16:
            stored = forward(self.models[spec.graph], self.z, chain=exact.chain, weights=round_to_float16)
            bound = (
                np.abs(stored.pixels - self.original.pixels)
                + rounding_bound(stored, weights=round_to_float16)
                + self.reference
            )
            return Tolerance(max_abs=float(bound.max()))
        ranges = self.onnx_ranges if spec.format is Format.ONNX else self.ranges
        predicted = noise_mean_abs(exact, spec.arithmetic, batch=spec.batch, ranges=ranges)
        return Tolerance(mean_abs=NOISE_MODEL_MARGIN * predicted)
