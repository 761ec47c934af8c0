"""The pixel table of an int8 decoder: its 256 int8 logits as 8-bit grey levels (numpy-free, no TensorFlow).

    from runtime.pixels import pixel_lut
    grey = pixel_lut(scale, zero_point)[q + 128]     # q: an int8 logit of the decoder's output

The exported C array (export/carray.py) and the generated C decoder (firmware_sim/codegen) both hold this
table.
"""

from __future__ import annotations

import math


def pixel_lut(scale: float, zero_point: int) -> list[int]:
    """round(255 · sigmoid(scale · (q − zero_point))) for q = −128 … 127: int8 logits -> 8-bit grey."""
    # exp() is capped below its overflow (e^709 ~ 8e307): a logit scale that large maps those steps to 0, as the
    # exact sigmoid does, instead of an OverflowError; every smaller argument is computed as before.
    return [round(255 / (1 + math.exp(min(-scale * (q - zero_point), 709.0)))) for q in range(-128, 128)]
