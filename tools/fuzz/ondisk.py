"""Fuzz targets judged by what a command leaves on disk: ``export`` (python -m export on edited run sets) and
``output_path`` (each CLI's output path made hostile: a read-only folder, a FIFO, a full disk, a non-empty
folder). Outcomes beyond the usual crash / hang / traceback / refusal_not_one_line:

- ``refused``: exit 2, one ``error:`` line, and every file and folder under the watched root as it was;
- ``exported`` / ``ran``: exit 0, the outputs whole, nothing else touched;
- ``destructive``: something the command did not write changed or vanished (or a refusal changed anything);
- ``half_written``: a partial output remains (a refusal left a new file or folder: a temporary, a staging
  folder, a truncated output; or a success left one beside its outputs).

    from tools.fuzz.ondisk import fuzz_export, fuzz_output_paths    # run by tools.fuzz.harness.run_fuzz
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
# The export attempt's flags: the smallest export the CLI allows (a success still converts 28 artifacts).
EXPORT_ARGS = ("--batch", "2", "--calibration", "prior", "--calibration-samples", "500")
EXPORT_ARGS += ("--validation-samples", "100", "--quiet")
EXPORT_TIMEOUT_S = 600.0  # a successful export of the tiny base takes about a minute on two busy cores
CLI_TIMEOUT_S = 120.0
# The tiny base run set (tests/conftest.py's TINY_TRAIN): one epoch on 1,024 images, a few seconds.
TINY_TRAIN = ("--train-limit", "1024", "--validation", "0", "--test-limit", "200", "--iw-samples", "100")
TINY_TRAIN += ("--epochs", "1", "--quiet", "--no-figures", "--precision", "float32")
MODEL_FILES = ("encoder.keras", "decoder.keras")


# ------------------------------------------------------------------------------------------ disk snapshots
def tree(root: Path) -> dict[str, tuple]:
    """Every path under ``root``: ("file", sha256) for a regular file, ("dir",) or the kind of anything else
    (a FIFO is never opened: a read would block). Symlinks are recorded, not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            rel = str(path.relative_to(root))
            if stat.S_ISREG(mode):
                out[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISDIR(mode):
                out[rel] = ("dir",)
            elif stat.S_ISLNK(mode):
                out[rel] = ("link", os.readlink(path))
            else:
                out[rel] = ("special", stat.S_IFMT(mode))
    return out


def judge(before: dict, after: dict, ok: bool, may_write: set[str]) -> tuple[str | None, str]:
    """``destructive`` / ``half_written`` (with what changed), or None when the disk is as it must be.

    ``may_write``: the paths the command writes (one ending in "/": everything under that folder). Changing or
    removing anything else is ``destructive``, and so is replacing a FIFO, device or link even at an output
    path (a reader waiting on a FIFO). A refusal must leave its outputs as they were: one it changed or added
    (a new file beside an older one, a temporary, a staging folder) is ``half_written``."""

    def output(rel: str) -> bool:
        if before.get(rel, ("file",))[0] not in ("file", "dir"):
            return False
        return any(rel == w or (w.endswith("/") and rel.startswith(w)) for w in may_write)

    changed = sorted(k for k, v in before.items() if after.get(k) != v)
    destroyed = [k for k in changed if not output(k)]
    if destroyed:
        return "destructive", f"changed or vanished: {destroyed[:5]}"
    new = sorted(set(after) - set(before))
    partial = changed + new if not ok else [k for k in new if not output(k)]
    if partial:
        return "half_written", f"left behind: {partial[:5]}"
    return None, ""


def cli_outcome(code: int, stderr: str) -> str:
    if "Traceback (most recent call last)" in stderr:
        return "traceback"
    lines = stderr.strip().splitlines()
    if code == 2 and len(lines) == 1 and lines[0].startswith("error: "):
        return "refused"
    return "refusal_not_one_line"


def _restore_permissions(root: Path) -> None:
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            os.chmod(Path(dirpath) / name, 0o755)
    os.chmod(root, 0o755)


# ---------------------------------------------------------------------------------------- the export base
def train_tiny_base(out: Path, data: str | None, model: str = "vae2d") -> Path:
    """A fresh tiny run set of ``model`` under ``out`` (a subprocess: training must not share the worker)."""
    if not data:
        from runtime.errors import VaeEdgeError

        raise VaeEdgeError("the export fuzz trains a tiny base run set and needs MNIST: pass --data")
    argv = [sys.executable, "-m", "train", "--model", model, "--data", data, "--out", str(out), *TINY_TRAIN]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"training the fuzz base failed: {proc.stderr.strip()[-600:]}")
    return out / model


def find_base(artifacts: str, model: str | None) -> Path | None:
    """A model folder under ``artifacts`` whose run set verifies and which has an export (the previous
    export each refusal must leave byte for byte), or None."""
    from runtime.errors import VaeEdgeError
    from runtime.vocab import VAE_MODELS
    from train.runset import verify_run_set

    root = Path(artifacts)
    names = [model] if model else [VAE_MODELS[-1], *VAE_MODELS[:-1]]  # the tools' default model first
    for name in names:
        folder = root / name
        try:
            if (folder / "export" / "manifest.json").is_file():
                verify_run_set(folder)
                return folder
        except (VaeEdgeError, OSError):
            continue
    return None


# ------------------------------------------------------------------------------------------ export edits
_BAD_VALUES = {
    "latent_dim": [0, -1, 1e9, 10**9, 513, 2.5, "2", None, True, [2], {"a": 1}, 3, 1],
    "conv_filters": [
        [32],
        [-1, 64],
        [32, 0],
        "ab",
        [32, 1e12],
        [32, 64, 1],
        [],
        [[32], [64]],
        None,
        [16, 32],
    ],
    "dense_units": [0, -5, 1e12, 4097, 16.0, "16", None, [16], 8, 17],
    "kind": ["classifier", "gan", "", None, 1, ["vae"]],
    "name": ["vae2d", "", None, 7, ["x"], "../evil"],
    "prior_cov": [
        [[1.0, 2.0], [2.0, 1.0]],
        "ab",
        [[1.0]],
        [[1.0, "x"], [0.0, 1.0]],
        [[1e308, 0], [0, 1e308]],
    ],
}
_HOSTILE_JSON = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"",
    b"\xff\xfe\x00garbage",
    b"[]",
    b"null",
    b'{"model": 1}',
    b'{"config": {"layers": "abc"}}',
    b'{"config": {"layers": [{"class_name": 1, "config": {"name": []}}]}}',
]
EXPORT_KINDS = (
    # (kind, weight): most edits are refused before TensorFlow (fast); benign ones export (a minute each).
    ("config_field", 40),
    ("config_drop_field", 4),
    ("config_json", 8),
    ("metrics_json", 5),
    ("keras_truncate", 10),
    ("keras_garble", 8),
    ("keras_config", 10),
    ("keras_swap", 3),
    ("missing_file", 6),
    ("unforged_keras", 4),
    ("benign", 1),
)


def forge(folder: Path) -> None:
    """Record the model files' sha256 in both run-set records (what a sender who edits the folder does)."""
    from train.runset import run_set_record

    for name in ("config.json", "metrics.json"):
        path = folder / name
        try:
            data = json.loads(path.read_text())
            record = data["run_set"]
            data["run_set"] = run_set_record(folder, record["run_id"], tuple(record["files"]))
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            continue  # an edit already made this file unreadable: export must refuse it as it is
        path.write_text(json.dumps(data))


def _keras_with_config(path: Path, config: bytes) -> None:
    """Rewrite the .keras zip at ``path`` with its config.json replaced (the weights kept)."""
    with zipfile.ZipFile(path) as src:
        members = {i.filename: src.read(i) for i in src.infolist()}
    members["config.json"] = config
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, data in members.items():
            dst.writestr(name, data)


def edit_run_set(folder: Path, rng: np.random.Generator) -> str:
    """One structured edit of a trained model folder (its hashes re-forged unless the kind says not); the
    kind names it for the report."""
    kinds, weights = zip(*EXPORT_KINDS, strict=True)
    kind = kinds[int(rng.choice(len(kinds), p=np.array(weights) / sum(weights)))]
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    keras = folder / MODEL_FILES[int(rng.integers(2))]
    if kind == "config_field":
        field = list(_BAD_VALUES)[int(rng.integers(len(_BAD_VALUES)))]
        value = _BAD_VALUES[field][int(rng.integers(len(_BAD_VALUES[field])))]
        config["model"][field] = value
        config_path.write_text(json.dumps(config))
        return f"config_field:{field}={json.dumps(value)[:40]}"
    if kind == "config_drop_field":
        field = ("latent_dim", "name")[int(rng.integers(2))]
        config["model"].pop(field, None)
        config_path.write_text(json.dumps(config))
        return f"config_drop_field:{field}"
    if kind in ("config_json", "metrics_json"):
        path = folder / f"{kind.split('_')[0]}.json"
        choice = int(rng.integers(len(_HOSTILE_JSON) + 1))
        if choice == len(_HOSTILE_JSON):  # truncated
            data = path.read_bytes()
            path.write_bytes(data[: int(rng.integers(len(data)))])
            return f"{kind}:truncated"
        path.write_bytes(_HOSTILE_JSON[choice])
        return f"{kind}:{choice}"
    if kind == "keras_truncate":
        data = keras.read_bytes()
        keras.write_bytes(data[: int(rng.integers(len(data)))])
    elif kind in ("keras_garble", "unforged_keras"):
        data = bytearray(keras.read_bytes())
        for at in rng.integers(0, len(data), int(rng.integers(1, 9))):
            data[at] = int(rng.integers(256))
        keras.write_bytes(bytes(data))
    elif kind == "keras_config":
        choice = int(rng.integers(len(_HOSTILE_JSON)))
        _keras_with_config(keras, _HOSTILE_JSON[choice])
        kind = f"keras_config:{choice}"
    elif kind == "keras_swap":
        a, b = (folder / n for n in MODEL_FILES)
        data = a.read_bytes()
        a.write_bytes(b.read_bytes())
        b.write_bytes(data)
    elif kind == "missing_file":
        name = ("config.json", "metrics.json", *MODEL_FILES)[int(rng.integers(4))]
        (folder / name).unlink()
        return f"missing_file:{name}"
    elif kind == "benign":  # an unknown key: still the trained model, so it must export
        config["model"]["comment"] = "edited by hand"
        config_path.write_text(json.dumps(config))
        return kind
    if kind != "unforged_keras":
        forge(folder)
    return f"{kind}:{keras.name}" if not kind.startswith("keras_config") else f"{kind}:{keras.name}"


def _export_whole(folder: Path) -> str | None:
    """What is wrong with a successful export's folder (a file its manifest lists missing or different)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        for entry in manifest["artifacts"]:
            data = (folder / entry["path"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                return f"{entry['path']} does not match its manifest"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"the new export is not whole: {type(exc).__name__}: {exc}"
    return None


def fuzz_export(base: Path, work: Path, worker, tally, n: int, rng: np.random.Generator, progress) -> None:
    """``n`` edits of the run set ``base`` (a model folder with an export), each through python -m export in
    the worker: refused with one line and the whole artifacts folder byte-identical (the previous export
    included), or exported whole (the export/ folder and the report replaced, nothing else touched)."""
    name = base.name
    artifacts, reports = work / "artifacts", work / "reports"
    pristine = work / "pristine"
    shutil.copytree(base, pristine, ignore=shutil.ignore_patterns(".*", "checkpoint.npz", "figures"))
    argv = ["--model", name, "--artifacts", str(artifacts), "--reports", str(reports), *EXPORT_ARGS]
    for _ in progress(range(n), n, "export"):
        shutil.rmtree(artifacts, ignore_errors=True)
        shutil.rmtree(reports, ignore_errors=True)
        shutil.copytree(pristine, artifacts / name)
        kind = edit_run_set(artifacts / name, rng)
        before = tree(artifacts)
        status, payload = worker.run("export_cli", timeout=EXPORT_TIMEOUT_S, argv=argv)
        after = tree(artifacts)
        if status == "refused":  # a VaeEdgeError outside the CLI's wrapper
            outcome, detail = "traceback", str(payload)
        elif status != "ok":
            outcome, detail = status, str(payload)
        else:
            code, stderr = payload["code"], payload["stderr"]
            outcome, detail = judge(before, after, code == 0, {f"{name}/export/"})
            if outcome is None and code == 0:
                broken = _export_whole(artifacts / name / "export")
                outcome, detail = ("half_written", broken) if broken else ("exported", "")
            elif outcome is None:
                outcome, detail = cli_outcome(code, stderr), stderr.strip()
        tally.add("export", kind, outcome, detail)


# ------------------------------------------------------------------------------------------ output paths
def _cli_cases(export_root: Path, model: str) -> list[dict]:
    """Each CLI that writes, with how its output path is passed and what a success writes.

    ``argv(out)``: the command line for output path ``out``; ``file``: whether the output is one file (else a
    folder the command writes ``writes`` into)."""
    tflite = export_root / model / "export" / "decoder_subpixel_int8_b1.tflite"
    sample = ["-m", "runtime", "sample", "--artifacts", str(export_root), "--model", model, "-n", "4"]
    return [
        {"cli": "sample_png", "file": True, "name": "digits.png", "argv": lambda o: [*sample, "--out", o]},
        {"cli": "sample_npy", "file": True, "name": "digits.npy", "argv": lambda o: [*sample, "--out", o]},
        {
            "cli": "runtime_dump",
            "file": True,
            "name": "outputs.npz",
            "argv": lambda o: (["-m", "runtime", "dump", "--artifacts", str(export_root), "--out", o]),
        },
        {
            "cli": "codegen",
            "file": False,
            "name": "firmware",
            "writes": ("fz_decoder.h", "fz_decoder.c"),
            "argv": lambda o: ["-m", "firmware_sim.codegen", str(tflite), "--name", "fz", "--out", o],
        },
        {
            "cli": "fuzz_reports",
            "file": False,
            "name": "reports",
            "writes": ("fuzz.json", "fuzz.md"),
            "argv": lambda o: (
                ["-m", "tools.fuzz", "--reports", o, "--quiet"]
                + [f"--{t}-mutations=0" for t in _FUZZ_TARGETS]
            ),
        },
    ]


_FUZZ_TARGETS = ("model", "manifest", "input", "npz", "firmware", "codegen", "export", "output-path")
OUTPUT_SITUATIONS = ("plain", "readonly_folder", "fifo", "full_disk", "nonempty_folder", "file_for_folder")


def _prepare(case: dict, situation: str, place: Path, rng: np.random.Generator) -> Path:
    """Lay out ``place`` for ``situation`` and return the output path to pass. ``place`` always holds a file
    the command never writes (``keep.txt``), and an older output where one would be."""
    place.mkdir(parents=True)
    (place / "keep.txt").write_text("not the command's")
    out = place / case["name"]
    names = case.get("writes", ())
    if case["file"]:
        out.write_bytes(b"an older output")
    else:
        out.mkdir()
        (out / "mine.txt").write_text("another tool's file in the output folder")
        for name in names:
            (out / name).write_bytes(b"an older output")
    if situation == "fifo":
        target = out if case["file"] else out / names[int(rng.integers(len(names)))]
        target.unlink()
        os.mkfifo(target)
    elif situation == "nonempty_folder" and case["file"]:
        out.unlink()
        out.mkdir()
        (out / "inside.txt").write_text("a folder where the file would go")
    elif situation == "file_for_folder" and not case["file"]:
        shutil.rmtree(out)
        out.write_bytes(b"a file where the folder would go")
    elif situation == "readonly_folder":
        os.chmod(out if not case["file"] else place, 0o555)
    return out


def _limit_file_size(size: int) -> None:
    """``ulimit -f`` in the child before it execs: writes past ``size`` bytes fail with EFBIG (a full disk)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def fuzz_output_paths(export_root: Path, model: str, work: Path, tally, n: int, rng, progress) -> None:
    """``n`` runs of a CLI (a subprocess each: ``ulimit -f`` applies to it alone) with a hostile output path.
    Outcome ``destructive`` if anything the command does not write changed or vanished, ``half_written`` if a
    partial output remains; a FIFO must never be opened (that would hang)."""
    cases = _cli_cases(export_root, model)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    for i in progress(range(n), n, "output_path"):
        case = cases[int(rng.integers(len(cases)))]
        situation = OUTPUT_SITUATIONS[int(rng.integers(len(OUTPUT_SITUATIONS)))]
        place = work / f"out{i}"
        out = _prepare(case, situation, place, rng)
        fsize = int(rng.choice([1, 4, 16])) * 1024 if situation == "full_disk" else None
        before = tree(place)
        kind = f"{case['cli']}-{situation}"
        try:
            proc = subprocess.run(
                [sys.executable, *case["argv"](str(out))],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=CLI_TIMEOUT_S,
                preexec_fn=functools.partial(_limit_file_size, fsize) if fsize else None,
            )
        except subprocess.TimeoutExpired:
            tally.add("output_path", kind, "hang", f"no exit within {CLI_TIMEOUT_S:.0f} s")
            _restore_permissions(place)
            continue
        _restore_permissions(place)
        after = tree(place)
        rel = str(out.relative_to(place))
        writes = {rel} if case["file"] else {f"{rel}/{w}" for w in case["writes"]} | {rel}
        if proc.returncode < 0:
            outcome, detail = "crash", f"signal {-proc.returncode}"
        else:
            outcome, detail = judge(before, after, proc.returncode == 0, writes)
            if outcome is not None:
                detail = f"exit {proc.returncode}; {detail}: {proc.stderr.strip()[-300:]}"
            else:
                ok = proc.returncode == 0 and "Traceback" not in proc.stderr
                outcome = "ran" if ok else cli_outcome(proc.returncode, proc.stderr)
                detail = proc.stderr.strip()[-600:]
        tally.add("output_path", kind, outcome, detail)
        shutil.rmtree(place, ignore_errors=True)
