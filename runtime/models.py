"""The runtime's library API: decoders, encoders and the classifier over any exported artifact.

    from runtime import load_manifest, Decoder
    m = load_manifest("artifacts/vae2d_corr/export")
    decoder = Decoder.from_manifest(m, precision="int8", graph="subpixel", batch=1)
    images = decoder.decode(m.prior.sample(16, seed=0))       # (16, 28, 28) float32 in [0, 1]

    for chunk in decoder.decode_iter(m.prior.sample(10**6, seed=0), chunk_rows=4096):
        ...                                                      # (<= 4096, 28, 28): bounded memory

Images have the manifest's shape (``decoder.image_shape``: H, W, C; 28x28x1 for the project's models): ``decode``
returns (n, H, W, C), except that single-channel images drop their channel axis, (n, H, W), as the project's
28x28 digits always have; ``decode(z, channel_axis=True)`` keeps it for every shape. Values lie in the manifest's
``image_range`` ([0, 1] for sigmoid decoders, [-1, 1] for tanh; None: a linear output, unbounded).

Inputs are checked before they reach an interpreter: wrong shape or dtype, NaN or inf, images outside [0, 1]
raise InvalidInputError (a ValueError). Any number of rows is accepted; they run in chunks of the artifact's
static batch (the last chunk padded). Full-integer sigmoid decoders output int8 logits (manifest
``"output_activation": "sigmoid"``): ``decode`` applies the sigmoid, so every decoder of a model returns the same
kind of values as its float32 decoder.

A loaded model must match its manifest entry: input and output names, shapes, dtypes and quantization are
compared after loading, so a file whose sha256 was updated after an edit cannot feed the wrong tensors
(ModelLoadError naming the file and the field). Outputs that hold NaN or inf are refused the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from .backends import ModelLoadError, OnnxModel, TensorInfo, TFLiteModel, run_batched
from .errors import InvalidInputError
from .latent import LatentSplit
from .manifest import Manifest
from .vocab import Precision, Role, default_decoder_graph

# Images are probabilities in [0, 1]; float16/int8 round-trips may overshoot a hair, 0..255 bytes may not.
IMAGE_RANGE_TOLERANCE = 1e-3
DEFAULT_CHUNK_ROWS = 4096  # 4096 decoded rows are 12.8 MB of float32 pixels
SCALE_RTOL = 1e-6  # the manifest stores the interpreter's float32 scale through a JSON double


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float32)))).astype(np.float32)


OUTPUT_ACTIVATIONS = {"sigmoid": sigmoid}


def decoder_pixels(raw: np.ndarray, output_activation: str | None) -> np.ndarray:
    """A decoder's (dequantized) output -> pixel probabilities; ``output_activation`` is its manifest entry's
    (None: the output already is pixels)."""
    return raw if output_activation is None else OUTPUT_ACTIVATIONS[output_activation](raw)


def _as_array(x, name: str) -> np.ndarray:
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists, objects numpy cannot stack
        raise InvalidInputError(
            f"{name} must be a numeric array ({' '.join(str(exc).split())[:120]})"
        ) from None


def _check_array(x, name: str, trailing: tuple[int, ...]) -> np.ndarray:
    arr = _as_array(x, name)
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


def io_mismatches(model, entry: dict) -> list[str]:
    """Every difference between a loaded model's input/output tensors and its manifest entry, as text."""
    out = []
    for kind in ("inputs", "outputs"):
        loaded: list[TensorInfo] = getattr(model, kind)
        recorded = entry[kind]
        if len(loaded) != len(recorded):
            out.append(f"{len(loaded)} {kind} (manifest: {len(recorded)})")
            continue
        for i, (got, want) in enumerate(zip(loaded, recorded, strict=True)):
            where = f"{kind}[{i}]"
            if got.name != want["name"]:
                out.append(f"{where} name {got.name!r} (manifest: {want['name']!r})")
            if list(got.shape) != list(want["shape"]):
                out.append(f"{where} shape {list(got.shape)} (manifest: {want['shape']})")
            if got.dtype != want["dtype"]:
                out.append(f"{where} dtype {got.dtype} (manifest: {want['dtype']})")
            want_q = "scale" in want
            if got.quantized != want_q:
                out.append(
                    f"{where} {'quantized' if got.quantized else 'not quantized'} (manifest: the opposite)"
                )
            elif want_q and (
                not abs(got.scale - want["scale"]) <= SCALE_RTOL * abs(want["scale"])
                or got.zero_point != want.get("zero_point", 0)
            ):
                out.append(
                    f"{where} quantization ({got.scale:.6g}, {got.zero_point}) "
                    f"(manifest: ({want['scale']:.6g}, {want.get('zero_point', 0)}))"
                )
    return out


class _Artifact:
    """A loaded artifact plus its manifest entry; runs any number of rows through its static batch."""

    def __init__(self, manifest: Manifest, entry: dict, num_threads: int | None = None):
        self.manifest, self.entry = manifest, entry
        if entry["format"] not in ("tflite", "onnx"):
            raise InvalidInputError(f"{entry['path']} is a {entry['format']} artifact, not a model to run")
        # The bytes that were hashed are the bytes loaded: the file is read once.
        path, data = manifest.read_verified(entry)
        model_cls = TFLiteModel if entry["format"] == "tflite" else OnnxModel
        self.model = model_cls(path, num_threads, data=data)
        self.batch = int(entry["batch"])
        problems = io_mismatches(self.model, entry)
        if not problems and self.model.inputs[0].shape[0] != self.batch:
            problems.append(f"batch {self.model.inputs[0].shape[0]} (manifest: {self.batch})")
        if not problems:
            problems = self._role_mismatches()
        if problems:
            raise ModelLoadError(
                f"{path} does not match its manifest entry: {'; '.join(problems[:3])}"
                f"{f' (+{len(problems) - 3} more)' if len(problems) > 3 else ''}; the file was modified after "
                "export: copy the export folder again or re-run python -m export"
            )

    def _role_mismatches(self) -> list[str]:
        """What this role needs of the tensors whatever the manifest says (a manifest can be edited too)."""
        return []

    @property
    def name(self) -> str:
        return self.entry["path"]

    def _finite_at_zero(self) -> bool:
        """Whether one batch of zeros gives finite outputs: a model that fails this is corrupt; one that
        passes it and overflows on other inputs was given inputs out of its range."""
        zeros = [np.zeros(tuple(max(d, 1) for d in self.model.inputs[0].shape), np.float32)]  # ONNX: -1
        return all(np.all(np.isfinite(o)) for o in self.model.run(zeros))

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        outs = run_batched(self.model, x, self.batch)
        for info, o in zip(self.model.outputs, outs, strict=True):
            if not np.all(np.isfinite(o)):
                if self._finite_at_zero():
                    # The model is sound (zeros give finite outputs): the inputs are what overflowed.
                    bad = ~np.isfinite(o).reshape(len(o), -1).all(axis=1)
                    largest = float(np.abs(x[bad]).max())
                    raise InvalidInputError(
                        f"inputs out of range: {int(bad.sum())} row(s), up to |{largest:.3g}|, overflow "
                        f"{self.model.path}'s float arithmetic (output {info.name!r} is NaN or inf); pass "
                        "values of the model's range (latents of the prior's scale, images in [0, 1])"
                    )
                raise ModelLoadError(
                    f"{self.model.path} output {info.name!r} holds NaN or inf for finite inputs; the file is "
                    "corrupt: copy the export folder again or re-run python -m export"
                )
        return outs


class Decoder(_Artifact):
    def __init__(self, manifest: Manifest, entry: dict, num_threads: int | None = None):
        self.output_activation = entry.get("output_activation")
        if self.output_activation is not None and self.output_activation not in OUTPUT_ACTIVATIONS:
            raise InvalidInputError(
                f"{entry['path']}: unknown output_activation {self.output_activation!r}; "
                "update the runtime or re-export"
            )
        # A split latent (runtime/latent.py): two int8 inputs per dimension, encoded here.
        split = entry.get("latent_split")
        self.latent_split = LatentSplit.from_json(split) if split is not None else None
        super().__init__(manifest, entry, num_threads)

    @property
    def input_size(self) -> int:
        """The model's input width: latent_dim, or twice that for a split latent."""
        return self.manifest.latent_dim * (2 if self.latent_split else 1)

    def _role_mismatches(self) -> list[str]:
        ins, outs = self.model.inputs, self.model.outputs
        if len(ins) != 1 or tuple(ins[0].shape[1:]) != (self.input_size,):
            split = " split in two int8s each" if self.latent_split else ""
            return [
                f"inputs {[list(t.shape) for t in ins]} do not take latents of size {self.manifest.latent_dim}"
                + split
            ]
        h, w, c = self.image_shape
        if len(outs) != 1 or int(np.prod(outs[0].shape[1:])) != h * w * c:
            return [f"outputs {[list(t.shape) for t in outs]} are not one {h}x{w}x{c} image per row"]
        return []

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
        if graph is None and precision in tuple(Precision):  # an unknown precision: select's error names it
            graph = default_decoder_graph(precision)
            exported = {
                a.get("graph") for a in manifest.find(role="decoder", format=format, precision=precision)
            }
            if graph not in exported and len(exported) == 1:  # a user's decoder: "transpose" is its one graph
                graph = exported.pop()
        if io is None and precision == "int8" and format == "tflite":
            io = "int8"
        entry = manifest.select(
            role="decoder", format=format, precision=precision, graph=graph, batch=batch, io=io
        )
        return cls(manifest, entry, num_threads)

    @property
    def latent_dim(self) -> int:
        return self.manifest.latent_dim

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one image, from the manifest (28x28x1 for the project's models)."""
        return self.manifest.image_shape

    @property
    def image_range(self) -> tuple[float, float] | None:
        """The range of the decoded values ([0, 1] for sigmoid, [-1, 1] for tanh, None: unbounded)."""
        return self.manifest.image_range

    def output_shape(self, *, channel_axis: bool = False) -> tuple[int, ...]:
        """The shape of one image as ``decode`` returns it: (H, W, C), or (H, W) for C = 1 unless
        ``channel_axis``."""
        h, w, c = self.image_shape
        return (h, w, c) if channel_axis or c != 1 else (h, w)

    def _step(self, chunk_rows: int) -> int:
        # Whole static batches per chunk, so only the very last chunk is padded.
        return max(self.batch, chunk_rows - chunk_rows % self.batch)

    def model_input(self, z: np.ndarray) -> np.ndarray:
        """Latents (n, latent_dim) as the model's float input: themselves, or the split latent's encoding."""
        return self.latent_split.encode(z) if self.latent_split else np.ascontiguousarray(z, np.float32)

    def raw_output(self, z: np.ndarray) -> np.ndarray:
        """The model's float output on latents ``z`` (n, latent_dim) before any output activation is applied
        (a full-int8 decoder's dequantized logits), the latent encoded as the artifact takes it."""
        return self._run(self.model_input(z))[0]

    def _decode_block(self, z: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return decoder_pixels(self.raw_output(z), self.output_activation).reshape(len(z), *shape)

    def decode(self, z, *, channel_axis: bool = False) -> np.ndarray:
        """Latents (n, latent_dim) -> images (n, H, W, C) of the manifest's shape, float32 in its image range;
        (n, H, W) for single-channel images (the project's (n, 28, 28) digits) unless ``channel_axis``.

        Runs in chunks written into the one output array: memory is the output plus one chunk.
        """
        z = _check_array(z, "latents", (self.latent_dim,))
        shape = self.output_shape(channel_axis=channel_axis)
        step = self._step(DEFAULT_CHUNK_ROWS)
        if len(z) <= step:
            return self._decode_block(z, shape)
        out = np.empty((len(z), *shape), np.float32)
        for i in range(0, len(z), step):
            out[i : i + step] = self._decode_block(z[i : i + step], shape)
        return out

    def decode_iter(
        self, z: np.ndarray | Iterable, chunk_rows: int = DEFAULT_CHUNK_ROWS, *, channel_axis: bool = False
    ) -> Iterator[np.ndarray]:
        """Decode in chunks of at most ``chunk_rows`` rows, yielding (rows, *output_shape) images as they are
        ready (see :meth:`decode` for the shape).

        ``z`` is an (n, latent_dim) array (or nested list) or an iterator of such arrays (e.g. a generator of
        prior samples), so memory stays bounded by one chunk however many latents there are. The images equal
        ``decode``'s.
        """
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise InvalidInputError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
        step = self._step(chunk_rows)
        shape = self.output_shape(channel_axis=channel_axis)
        # Arrays and nested lists are one block of rows; iterators and generators yield blocks of rows.
        iterator = isinstance(z, Iterable) and not isinstance(z, (np.ndarray, list, tuple, str, bytes))
        for part in z if iterator else (z,):
            part = _check_array(part, "latents", (self.latent_dim,))
            for i in range(0, len(part), step):
                yield self._decode_block(part[i : i + step], shape)


class _ImageModel(_Artifact):
    """An image-input artifact (encoder, classifier) whose outputs the manifest names in ``output_roles``."""

    role = ""
    output_names: tuple[str, ...] = ()

    def _role_mismatches(self) -> list[str]:
        ins = self.model.inputs
        if len(ins) != 1 or tuple(ins[0].shape[1:]) not in ((28, 28, 1), (28, 28)):
            return [f"inputs {[list(t.shape) for t in ins]} do not take 28x28 images"]
        roles = self.entry.get("output_roles", [])
        names_ok = not self.output_names or sorted(roles) == sorted(self.output_names)  # base class: any
        if len(roles) != len(self.model.outputs) or not names_ok:
            return [f"output_roles {roles} (the {self.role} has outputs {', '.join(self.output_names)})"]
        return []

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
        x = _as_array(images, "images")
        if x.ndim == 3:
            x = x[..., None]
        x = _check_array(x, "images", (28, 28, 1))
        lo, hi = float(x.min()), float(x.max())
        if lo < -IMAGE_RANGE_TOLERANCE or hi > 1 + IMAGE_RANGE_TOLERANCE:
            raise InvalidInputError(
                f"images must hold pixel values in [0, 1], found [{lo:g}, {hi:g}]"
                + ("; divide 0..255 bytes by 255" if hi > 1.5 else "")
            )
        return dict(zip(self.entry["output_roles"], self._run(x), strict=True))


class Encoder(_ImageModel):
    role = Role.ENCODER
    output_names = ("z_mean", "z_log_var")

    def encode(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Images (n, 28, 28) or (n, 28, 28, 1) in [0, 1] -> (z_mean, z_log_var)."""
        outs = self._outputs(images)
        return outs["z_mean"], outs["z_log_var"]


class Classifier(_ImageModel):
    role = Role.CLASSIFIER
    output_names = ("logits", "features")

    def predict(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Images (n, 28, 28[, 1]) in [0, 1] -> (logits (n, 10), features (n, 128))."""
        outs = self._outputs(images)
        return outs["logits"], outs["features"]
