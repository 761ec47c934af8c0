"""The runtime's library API: decoders, encoders and the classifier over any exported artifact.

    from runtime import load_manifest, Decoder
    m = load_manifest("artifacts/vae2d_corr/export")
    decoder = Decoder.from_manifest(m, precision="int8", graph="subpixel", batch=1)
    images = decoder.decode(m.prior.sample(16, seed=0))       # (16, 28, 28) float32 in [0, 1]

Inputs are checked before they reach an interpreter: wrong shape or dtype, NaN or inf raise ValueError.
Any number of rows is accepted; they run in chunks of the artifact's static batch (the last chunk padded).
Full-integer decoders output int8 logits (manifest ``"output_activation": "sigmoid"``): ``decode`` applies the
sigmoid, so every decoder returns pixel probabilities.
"""

from __future__ import annotations

import numpy as np

from .backends import OnnxModel, TFLiteModel, run_batched
from .errors import InvalidInputError
from .manifest import Manifest
from .vocab import Role


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float32)))).astype(np.float32)


OUTPUT_ACTIVATIONS = {"sigmoid": sigmoid}


def decoder_pixels(raw: np.ndarray, output_activation: str | None) -> np.ndarray:
    """A decoder's (dequantized) output -> pixel probabilities; ``output_activation`` is its manifest entry's
    (None: the output already is pixels)."""
    return raw if output_activation is None else OUTPUT_ACTIVATIONS[output_activation](raw)


def _check_array(x, name: str, trailing: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise InvalidInputError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 1 + len(trailing) or tuple(arr.shape[1:]) != trailing:
        raise InvalidInputError(
            f"{name} must have shape (n, {', '.join(map(str, trailing))}), got {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise InvalidInputError(f"{name} is empty; pass at least one row")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr).reshape(len(arr), -1).all(axis=1)))
        raise InvalidInputError(f"{name} holds NaN or inf in {bad} row(s); pass finite values")
    return arr


class _Artifact:
    """A loaded artifact plus its manifest entry; runs any number of rows through its static batch."""

    def __init__(self, manifest: Manifest, entry: dict, num_threads: int | None = None):
        self.manifest, self.entry = manifest, entry
        path = manifest.verify(entry)
        self.model = (
            TFLiteModel(path, num_threads) if entry["format"] == "tflite" else OnnxModel(path, num_threads)
        )
        self.batch = int(entry["batch"])

    @property
    def name(self) -> str:
        return self.entry["path"]

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return run_batched(self.model, x, self.batch)


class Decoder(_Artifact):
    def __init__(self, manifest: Manifest, entry: dict, num_threads: int | None = None):
        self.output_activation = entry.get("output_activation")
        if self.output_activation is not None and self.output_activation not in OUTPUT_ACTIVATIONS:
            raise InvalidInputError(
                f"{entry['path']}: unknown output_activation {self.output_activation!r}; "
                "update the runtime or re-export"
            )
        super().__init__(manifest, entry, num_threads)

    @classmethod
    def from_manifest(
        cls,
        manifest: Manifest,
        *,
        precision: str = "float32",
        graph: str | None = None,
        batch: int = 1,
        format: str = "tflite",
        io: str | None = None,
        num_threads: int | None = None,
    ) -> Decoder:
        if graph is None:
            graph = "subpixel" if precision == "int8" else "transpose"
        if io is None and precision == "int8" and format == "tflite":
            io = "int8"
        entry = manifest.select(
            role="decoder", format=format, precision=precision, graph=graph, batch=batch, io=io
        )
        return cls(manifest, entry, num_threads)

    @property
    def latent_dim(self) -> int:
        return self.manifest.latent_dim

    def decode(self, z) -> np.ndarray:
        """Latents (n, latent_dim) -> images (n, 28, 28) in [0, 1]."""
        z = _check_array(z, "latents", (self.latent_dim,))
        return decoder_pixels(self._run(z)[0], self.output_activation).reshape(len(z), 28, 28)


class _ImageModel(_Artifact):
    """An image-input artifact (encoder, classifier) whose outputs the manifest names in ``output_roles``."""

    role = ""

    @classmethod
    def from_manifest(cls, manifest: Manifest, batch: int | None = None, num_threads: int | None = None):
        """The artifact of this role at ``batch``, or the largest batch exported when None."""
        if batch is None:
            entry = max(manifest.find(role=cls.role), key=lambda a: a["batch"], default=None)
            if entry is None:
                manifest.select(role=cls.role)  # raises the error that lists what is available
        else:
            entry = manifest.select(role=cls.role, batch=batch)
        return cls(manifest, entry, num_threads)

    def _outputs(self, images) -> dict[str, np.ndarray]:
        x = np.asarray(images)
        if x.ndim == 3:
            x = x[..., None]
        x = _check_array(x, "images", (28, 28, 1))
        return dict(zip(self.entry["output_roles"], self._run(x), strict=True))


class Encoder(_ImageModel):
    role = Role.ENCODER

    def encode(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Images (n, 28, 28) or (n, 28, 28, 1) in [0, 1] -> (z_mean, z_log_var)."""
        outs = self._outputs(images)
        return outs["z_mean"], outs["z_log_var"]


class Classifier(_ImageModel):
    role = Role.CLASSIFIER

    def predict(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Images (n, 28, 28[, 1]) in [0, 1] -> (logits (n, 10), features (n, 128))."""
        outs = self._outputs(images)
        return outs["logits"], outs["features"]
