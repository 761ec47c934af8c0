"""The optimizer and learning-rate schedule every model trains with (Keras only, no TensorFlow: the JAX
lever sweep in tools/lever_sweep.py builds the same optimizer on the JAX backend)."""

from __future__ import annotations

import keras
import numpy as np

from .settings import TrainSettings


class WarmupStableDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to the peak, hold it, then cosine decay to the floor over the last ``decay_fraction``.

    Holding the peak (as the keras-io reference does for all 30 epochs) and decaying only at the end converged
    faster here than a cosine over the whole run, whose mean learning rate is half the peak.
    """

    def __init__(
        self, peak: float, floor: float, warmup_steps: int, total_steps: int, decay_fraction: float = 1 / 3
    ):
        self.peak, self.floor = float(peak), float(floor)
        self.warmup_steps, self.total_steps = int(warmup_steps), int(total_steps)
        self.decay_start = int(total_steps - round(decay_fraction * total_steps))

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.floor + (self.peak - self.floor) * step / max(1, self.warmup_steps)
        progress = keras.ops.clip(
            (step - self.decay_start) / max(1, self.total_steps - self.decay_start), 0.0, 1.0
        )
        decay = self.floor + 0.5 * (self.peak - self.floor) * (1.0 + keras.ops.cos(np.pi * progress))
        return keras.ops.where(step < self.warmup_steps, warm, decay)

    def get_config(self):
        return {
            "peak": self.peak,
            "floor": self.floor,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


def learning_rate_schedule(settings: TrainSettings, steps_per_epoch: int) -> WarmupStableDecay:
    total = max(1, settings.epochs * steps_per_epoch)
    warmup = int(min(settings.lr_warmup_epochs * steps_per_epoch, total // 2))
    return WarmupStableDecay(settings.learning_rate, settings.min_learning_rate, warmup, total)


def make_optimizer(settings: TrainSettings, steps_per_epoch: int) -> keras.optimizers.Adam:
    """Adam on the warm-up / hold / cosine schedule, keeping a moving average of the weights when
    ``settings.ema_decay`` > 0 (Keras's own: the average starts at the first step's weights)."""
    ema = {"use_ema": True, "ema_momentum": settings.ema_decay} if settings.ema_decay else {}
    return keras.optimizers.Adam(
        learning_rate_schedule(settings, steps_per_epoch),
        beta_2=settings.adam_beta_2,
        epsilon=settings.adam_epsilon,
        **ema,
    )
