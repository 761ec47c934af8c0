"""A trained model folder as one set: the model files, config.json and metrics.json carry the same run id.

Training writes the model files first, then config.json, history.csv and, last, metrics.json; config.json and
metrics.json both record ``run_set = {"run_id": ..., "files": {name: sha256}}``. A folder where a run was
killed between two writes, or where files of two runs were copied together, fails :func:`verify_run_set`,
which export calls before it reads anything. TensorFlow-free, no side effects on import.

    from train.runset import verify_run_set
    run_id = verify_run_set("artifacts/vae2d")      # raises VaeEdgeError naming the files of a mixed set

    python -m train.runset adopt artifacts/vae2d    # stamp a folder trained before run sets existed
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from runtime.cli import cli_main, parser
from runtime.errors import VaeEdgeError
from runtime.fileio import is_stale_temporary, is_temporary_name, sha256_file, write_json_atomic

RECORD_FILES = ("config.json", "metrics.json")
MODEL_FILES = {"vae": ("encoder.keras", "decoder.keras"), "classifier": ("classifier.keras",)}
# runtime.fileio.atomic_path wrote ".<target>.<8 random chars><suffix>" beside its target before its
# temporaries recorded their owner (runtime.fileio.is_temporary_name).
_TEMPORARY = re.compile(r"^\.[^/]+\.[a-z0-9_]{8}(\.[A-Za-z0-9]+)?$")


def new_run_id() -> str:
    return uuid.uuid4().hex


def run_set_record(model_dir: str | os.PathLike, run_id: str, files: tuple[str, ...]) -> dict:
    """The record config.json and metrics.json carry: the run id and the sha256 of each model file."""
    model_dir = Path(model_dir)
    return {"run_id": run_id, "files": {name: sha256_file(model_dir / name) for name in files}}


def _read_record(path: Path, retrain: str) -> dict:
    try:
        record = json.loads(path.read_text())["run_set"]
        if not isinstance(record.get("run_id"), str) or not isinstance(record.get("files"), dict):
            raise TypeError("run_set needs run_id and files")
        return record
    except FileNotFoundError:
        raise VaeEdgeError(
            f"{path} is missing; the folder holds no complete training run — {retrain}"
        ) from None
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise VaeEdgeError(
            f"{path} carries no readable run set ({type(exc).__name__}: {exc}); it predates run sets or is "
            f"damaged — {retrain}"
        ) from None


def verify_run_set(model_dir: str | os.PathLike) -> str:
    """Return the run id when config.json, metrics.json and the model files they list are one run's.

    Raises :class:`VaeEdgeError` naming the files that do not belong together (a run killed mid-write, or
    files copied from two runs), or the missing one.
    """
    model_dir = Path(model_dir)
    retrain = f"retrain it: python -m train --model {model_dir.name} --out {model_dir.parent}"
    config, metrics = (_read_record(model_dir / name, retrain) for name in RECORD_FILES)
    if config["run_id"] != metrics["run_id"] or config["files"] != metrics["files"]:
        raise VaeEdgeError(
            f"{model_dir}: config.json belongs to run {config['run_id']} and metrics.json to run "
            f"{metrics['run_id']}; the folder mixes two trainings — {retrain}"
        )
    for name, digest in metrics["files"].items():
        path = model_dir / name
        if not path.is_file():
            raise VaeEdgeError(f"{path} is missing from run {metrics['run_id']} — {retrain}")
        if sha256_file(path) != digest:
            raise VaeEdgeError(
                f"{path} does not belong to run {metrics['run_id']} recorded in config.json and metrics.json "
                f"(sha256 differs); the folder mixes two trainings — {retrain}"
            )
    return metrics["run_id"]


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    metrics: dict  # its metrics.json


def finished_run(model_dir: str | os.PathLike) -> FinishedRun | None:
    """The complete run in ``model_dir`` (its run set verifies), or None: nothing there, a run killed before
    it published everything, or a mixed set (those are for a new training to replace)."""
    model_dir = Path(model_dir)
    if not (model_dir / "metrics.json").is_file():
        return None
    try:
        run_id = verify_run_set(model_dir)
        metrics = json.loads((model_dir / "metrics.json").read_text())
    except (VaeEdgeError, OSError, ValueError):
        return None
    return FinishedRun(run_id, metrics if isinstance(metrics, dict) else {})


def remove_stale_temporaries(model_dir: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed run left beside its outputs (atomic writes never finished).

    A temporary that names its owner is removed only when that process is gone (a concurrent run's write in
    progress is kept); the older unnamed kind, and write tests, are removed as before."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    removed = []
    for path in model_dir.iterdir():
        if is_temporary_name(path.name):
            stale = is_stale_temporary(path)
        else:
            stale = bool(_TEMPORARY.match(path.name)) or path.name.startswith(".write-test-")
        if stale and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def adopt_legacy_run_set(model_dir: str | os.PathLike) -> str:
    """Give a folder trained before run sets existed one (a new run id over the files it holds now).

    Only for such folders: one whose config.json or metrics.json already carries a run set is refused, since
    it would hide a mixed set. The caller vouches that the files on disk are one training's.
    """
    model_dir = Path(model_dir)
    records = {}
    for name in RECORD_FILES:
        path = model_dir / name
        try:
            records[name] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise VaeEdgeError(f"{path} is unreadable ({exc}); retrain the model") from None
        if "run_set" in records[name]:
            raise VaeEdgeError(f"{path} already carries a run set; verify it instead (verify_run_set)")
    kind = records["config.json"].get("model", {}).get("kind", "vae")
    run_id = new_run_id()
    record = run_set_record(model_dir, run_id, MODEL_FILES.get(kind, MODEL_FILES["vae"]))
    write_json_atomic(model_dir / "config.json", {"run_set": record, **records["config.json"]})
    write_json_atomic(
        model_dir / "metrics.json", {**records["metrics.json"], "run_id": run_id, "run_set": record}
    )
    return run_id


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m train.runset", __doc__)
    p.add_argument(
        "action", choices=("verify", "adopt"), help="verify a run set, or adopt one trained before run sets"
    )
    p.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR", help="e.g. artifacts/vae2d")
    return p.parse_args(argv)


@cli_main
def main(args: argparse.Namespace) -> int:
    action = verify_run_set if args.action == "verify" else adopt_legacy_run_set
    for folder in args.model_dirs:
        print(f"{folder}: run {action(folder)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
