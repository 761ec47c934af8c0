"""What export checks in a model folder before it imports TensorFlow or builds anything.

A model folder is input a sender controls: config.json can be edited and its run set's hashes re-forged to
match, and a ``.keras`` file is a zip whose config.json is any JSON. So every check that can refuse without
TensorFlow runs first, in plain Python: config.json's fields against sane bounds (train/configcheck.py),
the run set (train/runset.py), and each model file's archive and layer list. A bad folder is then one
``error:`` line within a second, with nothing written and no TensorFlow start-up noise before it.

    from export.preflight import check_model_folder
    check_model_folder(Path("artifacts/vae2d"), "vae2d")      # raises VaeEdgeError naming the field and fix
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import VaeEdgeError
from runtime.vocab import CLASSIFIER
from train.configcheck import model_config_problem
from train.runset import MODEL_FILES, verify_run_set

# A trained model's config.json inside its .keras is a few kB; a zip can announce gigabytes for it.
MAX_KERAS_CONFIG_BYTES = 16 << 20


def retrain_hint(model_dir: Path, model_name: str) -> str:
    return f"retrain it: python -m train --model {model_name} --out {model_dir.parent}"


def _parse(data: bytes | str, what: str, fix: str):
    """JSON from a file a sender controls: 100,000 nested brackets are a RecursionError, not a traceback."""
    try:
        return json.loads(data)
    except RecursionError:
        raise VaeEdgeError(f"{what} nests its JSON too deeply to be a model's; {fix}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        reason = " ".join(str(exc).split())[:120]
        raise VaeEdgeError(f"{what} is not valid JSON ({reason}); {fix}") from None


def _read_json(path: Path, fix: str):
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VaeEdgeError(f"{path} is unreadable ({exc.strerror or exc}); {fix}") from None
    return _parse(data, str(path), fix)


def read_model_config(model_dir: Path, model_name: str) -> dict:
    """config.json's ``model`` object, its fields within bounds and its kind and name those of ``model_name``."""
    path = model_dir / "config.json"
    if not path.is_file():
        raise VaeEdgeError(f"{path} not found; train the model first: python -m train --model {model_name}")
    retrain = retrain_hint(model_dir, model_name)
    record = _read_json(path, retrain)
    model = record.get("model") if isinstance(record, dict) else None
    if model is None:
        raise VaeEdgeError(f'{path} has no "model" object; the file was edited or damaged: {retrain}')
    expected = CLASSIFIER if model_name == CLASSIFIER else "vae"
    problem = model_config_problem(model, expected_kind=expected)
    if problem:
        raise VaeEdgeError(f"{path}: {problem}; the file was edited or damaged: {retrain}")
    if model.get("name") != model_name:
        raise VaeEdgeError(
            f"{model_dir} holds the model {model.get('name')!r}, not {model_name!r}; point --artifacts at the "
            f"folder that contains {model_name}/"
        )
    if expected == "vae" and model.get("prior_cov") is not None:
        from runtime.prior import validate_covariance

        try:
            validate_covariance(model["prior_cov"], model["latent_dim"])
        except (VaeEdgeError, ValueError, TypeError) as exc:
            raise VaeEdgeError(f"{path}: model.prior_cov: {exc}; {retrain}") from None
    return model


def keras_config(
    path: Path, fix: str, *, max_member_bytes: int | None = None, shown: Path | None = None
) -> dict:
    """A ``.keras`` file's config.json, read as plain JSON from its zip (nothing in the file is deserialised into
    objects), with its layer list checked to be a list of named layers. A damaged, oversized or hostile archive
    is a one-line refusal ending in ``fix``; ``max_member_bytes`` also caps every other member's declared size.
    ``shown``: the path messages name (the user's, when ``path`` is a private copy)."""
    source, path = path, shown or path
    corrupt = f"{path} is corrupt or truncated"
    try:
        with zipfile.ZipFile(source) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > MAX_KERAS_CONFIG_BYTES:
                raise VaeEdgeError(
                    f"{path}: its config.json would unpack to {info.file_size} bytes, more than any model's "
                    f"({MAX_KERAS_CONFIG_BYTES}); {fix}"
                )
            if max_member_bytes is not None:
                for member in archive.infolist():
                    if member.file_size > max_member_bytes:
                        raise VaeEdgeError(
                            f"{path}: its {member.filename} would unpack to {member.file_size} bytes, more than "
                            f"a decoder for a device holds ({max_member_bytes}); {fix}"
                        )
            data = archive.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, KeyError, EOFError, ValueError) as exc:
        raise VaeEdgeError(f"{corrupt} ({type(exc).__name__}); {fix}") from None
    config = _parse(data, f"{path}'s config.json", fix)
    try:
        layers = config["config"]["layers"]
        found = [(layer["class_name"], layer["config"]["name"]) for layer in layers]
        if not isinstance(layers, list) or not all(
            isinstance(a, str) and isinstance(b, str) for a, b in found
        ):
            raise TypeError("layers are not a list of named layers")
    except (KeyError, TypeError, IndexError) as exc:
        raise VaeEdgeError(f"{corrupt} ({type(exc).__name__}); {fix}") from None
    return config


def keras_layers(path: Path, model_name: str) -> list[tuple[str, str]]:
    """The (class name, layer name) pairs a ``.keras`` file's config lists, read as plain JSON (nothing in the
    file is deserialised into objects); a damaged, oversized or hostile archive is a one-line refusal."""
    if not path.is_file():
        raise VaeEdgeError(f"{path} not found; train it first: python -m train --model {model_name}")
    config = keras_config(path, f"retrain it: python -m train --model {model_name}")
    return [(layer["class_name"], layer["config"]["name"]) for layer in config["config"]["layers"]]


# ------------------------------------------------------------------------------------ a decoder of your own
# The layers a decoder brought by the user (python -m export --decoder, docs/byom.md) may use: each has an
# int8 kernel in TFLite Micro once export has rebuilt the graph (UpSampling2D becomes RESIZE_NEAREST_NEIGHBOR,
# BatchNormalization is folded into the layer before it) and a rounding bound in export/bounds.py. The file is
# read against this list before Keras sees it; nothing else is loaded.
ALLOWED_LAYERS = (
    "InputLayer",
    "Dense",
    "Reshape",
    "Flatten",
    "Conv2D",
    "Conv2DTranspose",
    "DepthwiseConv2D",
    "UpSampling2D",
    "ZeroPadding2D",
    "BatchNormalization",
    "ReLU",
    "LeakyReLU",
    "Activation",
    "Add",
    "Concatenate",
)
# As an Activation layer or a layer's ``activation``; sigmoid and tanh only as the decoder's output activation.
ALLOWED_ACTIVATIONS = ("relu", "relu6", "sigmoid", "tanh", "linear")
MODEL_CLASSES = ("Functional", "Sequential")
MAX_LAYERS = 256
# What fits a microcontroller many times over, far below what exhausts this machine: the weights Keras would
# allocate from the config before it reads a single one (16M parameters = 64 MB of float32), and each side.
MAX_PARAMETERS = 1 << 24
MAX_SIDE = 1024
MAX_WEIGHTS_FILE_BYTES = 256 << 20
BYOM_FIX = "rebuild it from the allowed layers and save it with model.save(...) (docs/byom.md)"


@dataclass(frozen=True)
class KerasFile:
    """What the plain-JSON check of a user's ``.keras`` file found: its layers and its input's shape."""

    path: Path
    layers: tuple[tuple[str, str], ...]  # (class name, layer name)
    input_shape: tuple[int | None, ...] | None  # without the batch; None when the config does not say

    @property
    def latent_dim(self) -> int | None:
        """A decoder's latent size, from its input (None when the config does not say)."""
        return self.input_shape[0] if self.input_shape and len(self.input_shape) == 1 else None


def _serialized_objects(obj, skip: tuple[str, ...] = ("compile_config",)):
    """Every nested ``{"class_name": ...}`` object of a Keras config (what Keras would deserialise)."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            if "class_name" in o:
                yield o
            stack.extend(v for k, v in o.items() if k not in skip)
        elif isinstance(o, list):
            stack.extend(o)


def _layer_problem(layer: dict) -> str | None:
    """Why one layer of the config is refused, or None."""
    kind, config = layer["class_name"], layer["config"]
    name = config["name"]
    allowed = f"allowed layers: {', '.join(ALLOWED_LAYERS)}; activations: {', '.join(ALLOWED_ACTIVATIONS)}"
    if kind not in ALLOWED_LAYERS:
        return f"layer {name!r} is a {kind}, which export does not load ({allowed})"
    activation = config.get("activation")
    if activation is not None and activation not in ALLOWED_ACTIVATIONS:
        shown = activation if isinstance(activation, str) else "a custom function"
        return f"layer {name!r} ({kind}) has the activation {shown!r} ({allowed})"
    for key, limit in (("units", MAX_PARAMETERS), ("filters", MAX_SIDE), ("depth_multiplier", MAX_SIDE)):
        value = config.get(key)
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) and 0 < value <= limit
        ):
            return f"layer {name!r} ({kind}) has {key} {value!r}; it must be an integer from 1 to {limit}"
    if kind == "UpSampling2D" and config.get("interpolation", "nearest") != "nearest":
        return f"layer {name!r} (UpSampling2D) interpolates {config.get('interpolation')!r}; only 'nearest' is allowed"
    if config.get("data_format") not in (None, "channels_last"):
        return f"layer {name!r} ({kind}) is {config['data_format']}; only channels_last is allowed"
    dtype = config.get("dtype")
    policy = dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype
    if policy not in (None, "float32"):
        return f"layer {name!r} ({kind}) computes in {policy!r}; save the model with the float32 policy"
    return None


def _parameters(kind: str, config: dict, input_shape) -> int:
    """How many weights Keras allocates for the layer (0 for layers without any)."""
    channels = input_shape[-1] if input_shape else None
    if not isinstance(channels, int) or isinstance(channels, bool):
        return 0
    if kind == "Dense":
        return channels * int(config["units"]) + int(config["units"])
    if kind in ("Conv2D", "Conv2DTranspose", "DepthwiseConv2D"):
        kh, kw = config["kernel_size"]
        out = (
            int(config["filters"])
            if kind != "DepthwiseConv2D"
            else channels * int(config["depth_multiplier"])
        )
        return int(kh) * int(kw) * (channels if kind != "DepthwiseConv2D" else 1) * out + out
    if kind == "BatchNormalization":
        return 4 * channels
    return 0


def check_user_keras(path: Path, what: str, shown: Path | None = None) -> KerasFile:
    """Refuse a user's ``.keras`` file (``what``: "--decoder" or "--encoder") whose config names anything outside
    :data:`ALLOWED_LAYERS` and :data:`ALLOWED_ACTIVATIONS`, any object from outside Keras, a non-float32 layer or
    a size this export cannot hold; in plain Python, before TensorFlow is imported. One line naming the layer.
    ``shown``: the path messages name (the user's, when ``path`` is a private copy)."""
    if not path.is_file():
        raise VaeEdgeError(f"{what} {shown or path} not found; pass the .keras file your model was saved to")
    config = keras_config(path, BYOM_FIX, max_member_bytes=MAX_WEIGHTS_FILE_BYTES, shown=shown)
    source, path = path, shown or path
    if config.get("class_name") not in MODEL_CLASSES:
        raise VaeEdgeError(
            f"{path} holds a {config.get('class_name')!r} model; export reads functional and sequential Keras "
            f"models only: {BYOM_FIX}"
        )
    layers = config["config"]["layers"]
    if len(layers) > MAX_LAYERS:
        raise VaeEdgeError(f"{path} has {len(layers)} layers, more than {MAX_LAYERS}: {BYOM_FIX}")
    total, input_shape = 0, None
    for layer in layers:
        problem = _layer_problem(layer)
        if problem:
            raise VaeEdgeError(f"{path}: {problem}; {BYOM_FIX}")
        layer_input = (layer.get("build_config") or {}).get("input_shape")
        try:
            total += _parameters(layer["class_name"], layer["config"], layer_input)
        except (KeyError, TypeError, ValueError) as exc:
            raise VaeEdgeError(
                f"{path}: layer {layer['config']['name']!r} has a damaged config ({exc}); {BYOM_FIX}"
            ) from None
        if layer["class_name"] == "InputLayer" and input_shape is None:
            shape = layer["config"].get("batch_shape")
            input_shape = tuple(shape[1:]) if isinstance(shape, list) and shape else None
    for obj in _serialized_objects(config):
        module, registered = obj.get("module"), obj.get("registered_name")
        class_name = obj["class_name"]
        outside = module is not None and not (module == "keras" or str(module).startswith("keras."))
        if outside or registered not in (None, class_name) or class_name == "__lambda__":
            raise VaeEdgeError(
                f"{path} names {class_name!r} from {module or registered!r}, code from outside Keras that "
                f"export does not load: {BYOM_FIX}"
            )
    if total > MAX_PARAMETERS:
        raise VaeEdgeError(f"{path} declares {total} weights, more than {MAX_PARAMETERS}: {BYOM_FIX}")
    if input_shape is not None and not all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_SIDE)
        for d in input_shape
    ):
        raise VaeEdgeError(
            f"{path}: its input shape {list(input_shape)} is not sizes from 1 to {MAX_SIDE}: {BYOM_FIX}"
        )
    found = tuple((layer["class_name"], layer["config"]["name"]) for layer in layers)
    return KerasFile(source, found, input_shape)


def check_model_folder(model_dir: Path, model_name: str) -> None:
    """Every check of ``model_dir`` that needs no TensorFlow: config.json, the run set, the model archives."""
    if not model_dir.is_dir():
        raise VaeEdgeError(
            f"{model_dir} not found; train it first (python -m train --model {model_name}) or pass --artifacts"
        )
    model = read_model_config(model_dir, model_name)
    metrics = model_dir / "metrics.json"
    if (
        metrics.is_file()
    ):  # verify_run_set parses it too: a hostile one must be a refusal, not a RecursionError
        _read_json(metrics, retrain_hint(model_dir, model_name))
    verify_run_set(model_dir)
    for name in MODEL_FILES[model.get("kind", "vae")]:
        keras_layers(model_dir / name, model_name)


def quiet_tensorflow_import() -> None:
    """Import TensorFlow with file descriptor 2 closed to it.

    Its C++ side writes "All log messages before absl::InitializeLog() is called..." and the oneDNN notice
    (twice each) straight to fd 2 while it loads, whatever TF_CPP_MIN_LOG_LEVEL says, so a one-line refusal
    after the import would come with four lines of noise. A failed import still raises its ImportError.
    """
    import sys

    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
