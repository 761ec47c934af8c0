"""Model definitions for vae-edge: builders and the VAE loss terms. No side effects.

The Keras graphs of a config (``train/registry.py`` holds the config dataclasses and the built-in models,
TensorFlow-free; they are importable from here too) and the loss terms; the training loop (``train/loop.py``)
and the exporter (``export/``) import it, and nothing here trains, reads data or writes files.

    from train.model import PRESETS, build_encoder, build_decoder
    cfg = PRESETS["vae2d_corr"]
    decoder = build_decoder(cfg, batch_size=1)   # static batch, as exported
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import keras
import numpy as np
from keras import layers, ops

from runtime.prior import Prior

from .registry import CONFIGS, ClassifierConfig, VAEConfig
from .registry import config_from_json as config_from_json  # re-exported: export/ reads configs through here

IMAGE_SHAPE = (28, 28, 1)
NUM_PIXELS = 28 * 28
NUM_CLASSES = 10
# name -> config of every built-in model, read from train/registry.py's BUILTINS at each lookup
PRESETS: Mapping[str, VAEConfig | ClassifierConfig] = CONFIGS


# --------------------------------------------------------------------------------------------- builders
def build_encoder(
    cfg: VAEConfig, dtype_policy: str | None = None, batch_size: int | None = None
) -> keras.Model:
    """Image (28, 28, 1) in [0, 1] -> (z_mean, z_log_var), each (batch, latent_dim)."""
    f1, f2 = cfg.conv_filters
    kw = {"dtype": dtype_policy} if dtype_policy else {}
    x_in = keras.Input(IMAGE_SHAPE, batch_size=batch_size, name="image")
    x = layers.Conv2D(f1, 3, strides=2, padding="same", activation="relu", name="enc_conv1", **kw)(x_in)
    x = layers.Conv2D(f2, 3, strides=2, padding="same", activation="relu", name="enc_conv2", **kw)(x)
    x = layers.Flatten(name="enc_flatten")(x)
    x = layers.Dense(cfg.dense_units, activation="relu", name="enc_dense", **kw)(x)
    # The posterior parameters stay float32 even under a mixed policy: the KL needs their precision.
    z_mean = layers.Dense(cfg.latent_dim, name="z_mean", dtype="float32")(x)
    z_log_var = layers.Dense(cfg.latent_dim, name="z_log_var", dtype="float32")(x)
    return keras.Model(x_in, [z_mean, z_log_var], name=f"{cfg.name}_encoder")


def build_decoder(
    cfg: VAEConfig, batch_size: int | None = None, dtype_policy: str | None = None, logits: bool = False
) -> keras.Model:
    """Latent (batch, latent_dim) -> image (batch, 28, 28, 1) in [0, 1].

    ``batch_size`` fixes the batch dimension: exported decoders use a static batch because a dynamic one
    makes the TFLite converter emit SHAPE/STRIDED_SLICE ops that keep XNNPACK off the transposed convs.
    ``logits=True`` returns the pre-sigmoid output instead (the training loss uses it for stability).
    """
    f1, f2 = cfg.conv_filters
    kw = {"dtype": dtype_policy} if dtype_policy else {}
    z_in = keras.Input((cfg.latent_dim,), batch_size=batch_size, name="z")
    x = layers.Dense(7 * 7 * f2, activation="relu", name="dec_dense", **kw)(z_in)
    x = layers.Reshape((7, 7, f2), name="dec_reshape")(x)
    x = layers.Conv2DTranspose(f2, 3, strides=2, padding="same", activation="relu", name="dec_deconv1", **kw)(
        x
    )
    x = layers.Conv2DTranspose(f1, 3, strides=2, padding="same", activation="relu", name="dec_deconv2", **kw)(
        x
    )
    # Conv2DTranspose(1, 3, sigmoid) is written as a linear layer + a sigmoid layer: the same function,
    # but the logits stay reachable for a numerically stable cross-entropy.
    # The logits stay float32 under a bf16 policy: a bf16 logit (8-bit significand) is off by up to 2^-8 of
    # its value, an error the cross-entropy sums over 784 pixels; this last layer is a small part of the work.
    x = layers.Conv2DTranspose(1, 3, padding="same", name="dec_logits", dtype="float32")(x)
    if logits:
        return keras.Model(z_in, x, name=f"{cfg.name}_decoder_logits")
    out = layers.Activation("sigmoid", name="image", dtype="float32")(x)
    return keras.Model(z_in, out, name=f"{cfg.name}_decoder")


class DepthToSpace(layers.Layer):
    """tf.nn.depth_to_space as a layer (TFLite DEPTH_TO_SPACE, ONNX DepthToSpace DCR)."""

    def __init__(self, block_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = block_size

    def call(self, x):
        import tensorflow as tf  # the sub-pixel graph is only built for export, on the TF backend

        return tf.nn.depth_to_space(x, self.block_size)

    def compute_output_shape(self, shape):
        b = self.block_size
        return (shape[0], shape[1] * b, shape[2] * b, shape[3] // (b * b))

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


def build_subpixel_decoder(cfg: VAEConfig, batch_size: int | None = None) -> keras.Model:
    """The decoder with every transposed convolution rewritten as an ordinary convolution (deployment graph).

    Each stride-2 Conv2DTranspose(F, 3) becomes pad(top/left 1) → Conv2D(4F, 2×2, valid) → depth-to-space(2)
    (sub-pixel convolution). The stride-1 Conv2DTranspose(1, 3) on the 28×28 map runs at 14×14 instead, before
    the second depth-to-space: Conv2D(4, 3, same) over the four phases' channels, then depth-to-space(2) of the
    four logit phases. A Conv2D with one output channel wastes most of an int8 GEMM tile, so the 14×14 form is
    the faster one (docs/results.md, Export).
    Same function, same trained weights re-indexed by :func:`subpixel_decoder_from`; int8 CONV_2D kernels
    exist in every runtime, while ONNX Runtime leaves ConvTranspose in float and TFLite Micro's TRANSPOSE_CONV
    needs a whole-output int32 scratch buffer.
    """
    f1, f2 = cfg.conv_filters
    z_in = keras.Input((cfg.latent_dim,), batch_size=batch_size, name="z")
    x = layers.Dense(7 * 7 * f2, activation="relu", name="dec_dense")(z_in)
    x = layers.Reshape((7, 7, f2), name="dec_reshape")(x)
    for name, filters in (("dec_deconv1", f2), ("dec_deconv2", f1)):
        x = layers.ZeroPadding2D(((1, 0), (1, 0)), name=f"{name}_pad")(x)
        x = layers.Conv2D(4 * filters, 2, padding="valid", activation="relu", name=f"{name}_subpixel")(x)
        if name == "dec_deconv1":
            x = DepthToSpace(2, name=f"{name}_d2s")(x)
    x = layers.Conv2D(4, 3, padding="same", name="dec_logits_subpixel")(x)
    x = DepthToSpace(2, name="dec_logits_d2s")(x)
    out = layers.Activation("sigmoid", name="image")(x)
    return keras.Model(z_in, out, name=f"{cfg.name}_decoder_subpixel")


# Rows (or columns) of a stride-2, 3-tap transposed conv, per output phase: {window tap: kernel tap}.
# Output 2m uses input m (tap 0) and m-1 (tap 2); output 2m+1 uses input m (tap 1). With one row of
# padding on top, window tap 0 reads input m-1 and window tap 1 reads input m.
_SUBPIXEL_TAPS = ({1: 0, 0: 2}, {1: 1})


def subpixel_kernel(w_transpose: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Conv2DTranspose(F, 3, s2, same) kernel (3, 3, F, C) -> sub-pixel Conv2D kernel (2, 2, C, 4F) and bias.

    Output channel (2·pr + pc)·F + f holds phase (row parity pr, column parity pc), the order
    depth-to-space expects; taps a phase never reads stay zero.
    """
    _, _, f, c = w_transpose.shape
    k = np.zeros((2, 2, c, 4 * f), w_transpose.dtype)
    for pr in (0, 1):
        for pc in (0, 1):
            phase = 2 * pr + pc
            for di, a in _SUBPIXEL_TAPS[pr].items():
                for dj, b in _SUBPIXEL_TAPS[pc].items():
                    k[di, dj, :, phase * f : (phase + 1) * f] = w_transpose[a, b].T
    return k, np.tile(bias, 4)


def flipped_conv_kernel(w_transpose: np.ndarray) -> np.ndarray:
    """Conv2DTranspose(F, k, s1, same) kernel (k, k, F, C) -> the equivalent Conv2D kernel (k, k, C, F)."""
    return np.ascontiguousarray(w_transpose[::-1, ::-1].transpose(0, 1, 3, 2))


def subpixel_logits_kernel(conv_kernel: np.ndarray) -> np.ndarray:
    """Conv2D(1, 3, same) kernel (3, 3, F, 1) applied after depth-to-space(2) -> the Conv2D(4, 3, same) kernel
    (3, 3, 4F, 4) applied before it, whose output channel 2·a + b is the logit of phase (row a, column b).

    High-resolution row 2i + a + d (d = −1, 0, 1) is low-resolution row i + ⌊(a + d) / 2⌋, phase (a + d) mod 2.
    """
    f = conv_kernel.shape[2]
    k = np.zeros((3, 3, 4 * f, 4), conv_kernel.dtype)
    for a in (0, 1):
        for b in (0, 1):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    (u, pr), (v, pc) = divmod(a + dy, 2), divmod(b + dx, 2)
                    phase = 2 * pr + pc
                    k[u + 1, v + 1, phase * f : (phase + 1) * f, 2 * a + b] += conv_kernel[
                        dy + 1, dx + 1, :, 0
                    ]
    return k


def subpixel_decoder_from(decoder: keras.Model, cfg: VAEConfig, batch_size: int | None = None) -> keras.Model:
    """Build :func:`build_subpixel_decoder` and fill it with ``decoder``'s trained weights, re-indexed."""
    model = build_subpixel_decoder(cfg, batch_size)
    model.get_layer("dec_dense").set_weights(decoder.get_layer("dec_dense").get_weights())
    for name in ("dec_deconv1", "dec_deconv2"):
        w, b = decoder.get_layer(name).get_weights()
        model.get_layer(f"{name}_subpixel").set_weights(list(subpixel_kernel(w, b)))
    w, b = decoder.get_layer("dec_logits").get_weights()
    model.get_layer("dec_logits_subpixel").set_weights(
        [subpixel_logits_kernel(flipped_conv_kernel(w)), np.tile(b, 4)]
    )
    return model


def build_classifier(
    cfg: ClassifierConfig, dtype_policy: str | None = None, batch_size: int | None = None
) -> keras.Model:
    """Image (28, 28, 1) in [0, 1] -> (logits (batch, 10), features (batch, feature_units))."""
    f1, f2 = cfg.conv_filters
    kw = {"dtype": dtype_policy} if dtype_policy else {}
    x_in = keras.Input(IMAGE_SHAPE, batch_size=batch_size, name="image")
    x = layers.Conv2D(f1, 3, padding="same", activation="relu", name="cls_conv1", **kw)(x_in)
    x = layers.MaxPooling2D(name="cls_pool1", **kw)(x)
    x = layers.Conv2D(f2, 3, padding="same", activation="relu", name="cls_conv2", **kw)(x)
    x = layers.MaxPooling2D(name="cls_pool2", **kw)(x)
    x = layers.Flatten(name="cls_flatten")(x)
    features = layers.Dense(cfg.feature_units, activation="relu", name="features", dtype="float32")(x)
    x = layers.Dropout(cfg.dropout, name="cls_dropout")(features)
    logits = layers.Dense(NUM_CLASSES, name="logits", dtype="float32")(x)
    return keras.Model(x_in, [logits, features], name="classifier")


def copy_weights(src: keras.Model, dst: keras.Model) -> keras.Model:
    """Copy weights layer by layer (by name) between two builds of the same architecture."""
    for layer in dst.layers:
        if layer.weights:
            layer.set_weights(src.get_layer(layer.name).get_weights())
    return dst


# --------------------------------------------------------------------------------------------- loss terms
def bce_sum_from_logits(x, logits):
    """Per-image binary cross-entropy summed over the 784 pixels, from logits (stable form).

    BCE(x, sigmoid(l)) = max(l, 0) - l·x + log(1 + exp(-|l|)).
    """
    logits = ops.reshape(ops.cast(logits, "float32"), (-1, NUM_PIXELS))
    x = ops.reshape(ops.cast(x, "float32"), (-1, NUM_PIXELS))
    per_pixel = ops.relu(logits) - logits * x + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.sum(per_pixel, axis=1)


def kl_terms_per_dim(z_mean, z_log_var, prior: Prior):
    """Per-image, per-dimension contributions whose row sum is KL(N(μ, diag σ²) ‖ N(0, Σ)).

    KL = ½[tr(Σ⁻¹ diag σ²) + μᵀΣ⁻¹μ − k + log det Σ − Σ log σᵢ²]. The split per dimension uses
    the i-th diagonal term and the i-th term of μᵀΣ⁻¹μ = Σᵢ μᵢ (Σ⁻¹μ)ᵢ; for Σ = I it is the usual
    isotropic per-unit KL ½(σᵢ² + μᵢ² − 1 − log σᵢ²).
    """
    sigma = prior.sigma
    sigma_inv = np.linalg.inv(sigma)
    logdet = float(np.linalg.slogdet(sigma)[1])
    k = prior.latent_dim
    inv = ops.convert_to_tensor(sigma_inv.astype("float32"))
    diag_inv = ops.convert_to_tensor(np.diag(sigma_inv).astype("float32"))
    log_diag = ops.convert_to_tensor(np.full(k, logdet / k, dtype="float32"))
    z_mean = ops.cast(z_mean, "float32")
    z_log_var = ops.cast(z_log_var, "float32")
    var = ops.exp(z_log_var)
    mahal = z_mean * ops.matmul(z_mean, inv)  # Σ⁻¹ is symmetric, so (μ Σ⁻¹)ᵢ = (Σ⁻¹ μ)ᵢ
    return 0.5 * (diag_inv * var + mahal - 1.0 + log_diag - z_log_var)


def kl_marginal_per_dim(z_mean, z_log_var, prior: Prior):
    """Per-image KL(N(μᵢ, σᵢ²) ‖ N(0, Σᵢᵢ)) of each latent dimension's marginal, shape (batch, k).

    For Σ = I this equals :func:`kl_terms_per_dim`; for a correlated Σ their sum is not the joint KL.
    """
    diag = ops.convert_to_tensor(np.diag(prior.sigma).astype("float32"))
    z_mean = ops.cast(z_mean, "float32")
    z_log_var = ops.cast(z_log_var, "float32")
    return 0.5 * ((ops.exp(z_log_var) + ops.square(z_mean)) / diag - 1.0 + ops.log(diag) - z_log_var)


def kl_divergence(z_mean, z_log_var, prior: Prior):
    """Per-image KL(N(μ, diag σ²) ‖ N(0, Σ)) in nats, shape (batch,)."""
    return ops.sum(kl_terms_per_dim(z_mean, z_log_var, prior), axis=1)


def log_normal_diag(z, mean, log_var):
    """log N(z; mean, diag exp(log_var)) summed over the last axis."""
    return -0.5 * ops.sum(math.log(2 * math.pi) + log_var + ops.square(z - mean) / ops.exp(log_var), axis=-1)


def log_prior(z, prior: Prior):
    """log N(z; 0, Σ) summed over the last axis."""
    sigma_inv = ops.convert_to_tensor(np.linalg.inv(prior.sigma).astype("float32"))
    logdet = float(np.linalg.slogdet(prior.sigma)[1])
    mahal = ops.sum(z * ops.matmul(z, sigma_inv), axis=-1)
    return -0.5 * (prior.latent_dim * math.log(2 * math.pi) + logdet + mahal)


# Soft bounds on the encoder's log σ²: far outside what a trained posterior uses (its log-variances sit well
# inside [-20, 2], where the clamp moves a value by less than 1e-4), but they keep exp(log σ²) and 1/σ² finite
# in float32 when a bad batch drives the encoder's last Dense layer far out.
LOG_VAR_MIN, LOG_VAR_MAX = -30.0, 12.0


def bound_log_var(z_log_var):
    """Soft clamp of log σ² into (LOG_VAR_MIN, LOG_VAR_MAX): a softplus step at each end, smooth and with a
    non-zero gradient everywhere, the identity to < 1e-4 on [-20, 2]."""
    z_log_var = ops.cast(z_log_var, "float32")
    above_min = LOG_VAR_MIN + ops.softplus(z_log_var - LOG_VAR_MIN)
    return LOG_VAR_MAX - ops.softplus(LOG_VAR_MAX - above_min)


def reparameterize(z_mean, z_log_var, eps):
    """Posterior sample z = μ + σ ⊙ ε with diagonal σ — the same for every prior.

    The KL above is taken against the *diagonal* posterior, so the sample fed to the decoder must come
    from that same posterior. Adding L ε here (as the source study does) would train the decoder on a
    distribution the KL never sees; the prior's correlation belongs to generation only: z = L ε.
    """
    return z_mean + ops.exp(0.5 * z_log_var) * eps


def study_sample(z_mean, eps, prior: Prior):
    """The source study's training sample z = μ + L ε: a draw from q′ = N(μ, Σ), whatever σ the encoder gives.

    Kept only to measure that variant (``--posterior study``). With the same KL term its objective is
    −ELBO(q′) + KL(N(0, diag σ²) ‖ N(0, Σ)): still an upper bound on −log p(x), but looser, from a posterior
    whose covariance cannot depend on x (docs/correlated_prior.md).
    """
    chol_t = ops.convert_to_tensor(prior.cholesky.T.astype("float32"))
    return ops.cast(z_mean, "float32") + ops.matmul(ops.cast(eps, "float32"), chol_t)


def log_normal_full(z, mean, prior: Prior):
    """log N(z; mean, Σ) summed over the last axis: the study's posterior q′ = N(μ, Σ) as a proposal."""
    return log_prior(z - mean, prior)
