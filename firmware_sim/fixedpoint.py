"""TFLite / TFLite Micro integer arithmetic in numpy, element-wise and bit-exact.

These are the scalar definitions of gemmlowp's fixedpoint.h and TFLite's quantization_util / common.h
(the default build, without TFLITE_SINGLE_ROUNDING), vectorised over int64 arrays that always hold int32 values.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def wrap32(x):
    """Two's-complement wrap to int32, as C++ int32 arithmetic does on every target we care about."""
    x = np.asarray(x, np.int64)
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def saturating_rounding_doubling_high_mul(a, b):
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    overflow = (a == b) & (a == INT32_MIN)
    ab = a * b  # |a·b| < 2^62: exact in int64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    num = ab + nudge
    high = np.where(num >= 0, num >> 31, -((-num) >> 31))  # C++ division truncates toward zero
    return np.where(overflow, INT32_MAX, high)


def rounding_divide_by_pot(x, exponent):
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift):
    """TFLite's MultiplyByQuantizedMultiplier (double rounding: high-mul, then rounding right shift)."""
    shift = np.asarray(shift, np.int64)
    left = np.where(shift > 0, shift, 0)
    right = np.where(shift > 0, 0, -shift)
    x = wrap32(np.asarray(x, np.int64) * (np.int64(1) << left))
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), right)


def tflite_round(x: float) -> float:
    """std::round: half away from zero."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real = q · 2^shift, q a Q31 value in [0.5, 1)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(tflite_round(q * (1 << 31)))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


# --------------------------------------------------------------------------------- gemmlowp logistic, tanh
def _srm_pot(x, exponent: int):
    """SaturatingRoundingMultiplyByPOT<exponent>."""
    x = np.asarray(x, np.int64)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, wrap32(x << exponent)))


def _mul(a, b):
    return saturating_rounding_doubling_high_mul(a, b)


def _add(a, b):
    return wrap32(np.asarray(a, np.int64) + b)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    constant_term, one_third = 1895147668, 715827883
    x = _add(a, 1 << 28)
    x2 = _mul(x, x)
    x3 = _mul(x2, x)
    x4 = _mul(x2, x2)
    x4_over_4 = _srm_pot(x4, -2)
    inner = _srm_pot(_add(_mul(_add(x4_over_4, x3), one_third), x2), -1)
    return _add(constant_term, _mul(constant_term, _add(x, inner)))


def _exp_on_negative_values(a, integer_bits: int):
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod = _add(np.asarray(a, np.int64) & mask, -one_quarter)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(_srm_pot(a_mod, integer_bits))
    remainder = _add(a_mod, -np.asarray(a, np.int64))
    for exponent, multiplier in (
        (-2, 1672461947),
        (-1, 1302514674),
        (0, 790015084),
        (1, 290630308),
        (2, 39332535),
        (3, 720401),
        (4, 242),
    ):
        if integer_bits > exponent:
            bit = np.int64(1) << (fractional_bits + exponent)
            result = np.where((remainder & bit) != 0, _mul(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = np.where(np.asarray(a) < clamp, 0, result)
    return np.where(np.asarray(a) == 0, INT32_MAX, result)


def _half_denominator_reciprocal(a):
    """1 / ((1 + a) / 2) for a raw Q0.31 ``a`` in (0, 1), as raw Q2.29: the Newton-Raphson division shared by
    gemmlowp's one_over_one_plus_x_for_x_in_0_1 and one_minus_x_over_one_plus_x_for_x_in_0_1."""
    # half_denominator = RoundingHalfSum(a, One) with One = INT32_MAX for 0 integer bits
    s = np.asarray(a, np.int64) + INT32_MAX
    half_denominator = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))
    x = _add(1515870810, _mul(half_denominator, -1010580540))  # 48/17 − 32/17 · d, in Q2.29
    one_f2 = 1 << 29
    for _ in range(3):
        one_minus = _add(one_f2, -_mul(half_denominator, x))
        x = _add(x, _srm_pot(_mul(x, one_minus), 2))
    return x


def _one_over_one_plus_x_for_x_in_0_1(a):
    # Rescale<0>(ExactMulByPot<-1>(x)): the Q2.29 raw read as Q1.30, then to Q0.31
    return _srm_pot(_half_denominator_reciprocal(a), 1)


def _one_minus_x_over_one_plus_x_for_x_in_0_1(a):
    return _srm_pot(_add(_half_denominator_reciprocal(a), -(1 << 29)), 2)  # Rescale<0>(x - F2::One())


def gemmlowp_logistic(a, integer_bits: int):
    """gemmlowp::logistic on raw Q(integer_bits).(31-integer_bits) values -> raw Q0.31."""
    a = np.asarray(a, np.int64)
    positive = a > 0
    abs_a = np.where(positive, a, wrap32(-a))
    result_pos = _one_over_one_plus_x_for_x_in_0_1(_exp_on_negative_values(wrap32(-abs_a), integer_bits))
    result_neg = _add(INT32_MAX, -result_pos)
    return np.where(a == 0, 1 << 30, np.where(positive, result_pos, result_neg))


def gemmlowp_tanh(a, integer_bits: int):
    """gemmlowp::tanh on raw Q(integer_bits).(31-integer_bits) values -> raw Q0.31.

    tanh(|a|) = (1 - e^(-2|a|)) / (1 + e^(-2|a|)): neg_tanh_on_negative_values takes the non-positive input,
    ExactMulByPot<1> reads the same raw value with one more integer bit (twice the value, no arithmetic), and
    one_minus_x_over_one_plus_x_for_x_in_0_1 divides; the sign is put back and tanh(0) is exactly 0.
    """
    a = np.asarray(a, np.int64)
    negative = a < 0
    n = np.where(negative, a, wrap32(-a))
    t = _one_minus_x_over_one_plus_x_for_x_in_0_1(_exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, 0, np.where(negative, wrap32(-t), t))
