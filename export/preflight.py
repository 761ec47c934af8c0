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


def keras_layers(path: Path, model_name: str) -> list[tuple[str, str]]:
    """The (class name, layer name) pairs a ``.keras`` file's config lists, read as plain JSON (nothing in the
    file is deserialised into objects); a damaged, oversized or hostile archive is a one-line refusal."""
    if not path.is_file():
        raise VaeEdgeError(f"{path} not found; train it first: python -m train --model {model_name}")
    retrain = f"retrain it: python -m train --model {model_name}"
    corrupt = f"{path} is corrupt or truncated"
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > MAX_KERAS_CONFIG_BYTES:
                raise VaeEdgeError(
                    f"{path}: its config.json would unpack to {info.file_size} bytes, more than any model's "
                    f"({MAX_KERAS_CONFIG_BYTES}); {retrain}"
                )
            data = archive.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, KeyError, EOFError, ValueError) as exc:
        raise VaeEdgeError(f"{corrupt} ({type(exc).__name__}); {retrain}") from None
    config = _parse(data, f"{path}'s config.json", retrain)
    try:
        layers = config["config"]["layers"]
        found = [(layer["class_name"], layer["config"]["name"]) for layer in layers]
        if not isinstance(layers, list) or not all(
            isinstance(a, str) and isinstance(b, str) for a, b in found
        ):
            raise TypeError("layers are not a list of named layers")
    except (KeyError, TypeError, IndexError) as exc:
        raise VaeEdgeError(f"{corrupt} ({type(exc).__name__}); {retrain}") from None
    return found


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
