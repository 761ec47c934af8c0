"""The fuzz run: targets, a crash-proof worker, outcome counts, reports/fuzz.{json,md}.

    from tools.fuzz.harness import FuzzConfig, run_fuzz
    result = run_fuzz(FuzzConfig(artifacts="artifacts", model_mutations=1000, ...))
    result.counts["model_sha_updated"]["crash"]      # goals: 0 crash, 0 traceback, 0 silent_diff_io_detectable

Targets: ``model_sha_updated`` (a mutated .tflite/.onnx whose sha256 and size were updated in the manifest:
the hostile case, where only the runtime's checks after the sha256 stand), ``model_sha_stale`` (the manifest
left as exported), ``manifest`` (mutated manifest.json), ``input`` (mutated latents and images), ``npz``
(mutated MNIST files), ``firmware`` (firmware_sim's loading of mutated int8 graphs, sha256 updated) and
``codegen`` (the C generator's CLI on structured edits of small untrained decoders, every C it writes built
with ASan/UBSan, run and compared with the numpy reference; needs no export folder).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from runtime.vocab import VAE_MODELS

from . import mutate

FAILURES = ("crash", "hang", "traceback", "silent_diff_io_detectable", "refusal_not_one_line")
# The codegen target's verdicts (worker.run_codegen): refused (exit 2, one error: line, the folder untouched),
# ran (C built with sanitizers, run, logits equal to the reference's), ran_reference_refused (C ran clean but
# the reference does not take the graph), and the failures below.
CODEGEN_FAILURES = (
    "crash",
    "hang",
    "traceback",
    "refusal_not_one_line",
    "silently_wrong",  # the C's logits differ from the numpy reference's
    "out_of_bounds",  # AddressSanitizer stopped the C
    "undefined_behaviour",  # UBSan stopped the C (shift exponent, signed overflow...)
    "c_does_not_compile",
    "c_failed",  # the C exited nonzero otherwise
    "destructive",  # a refusal changed a file that was in the output folder
    "half_written",  # a file left beside the pair, or a pair whose .h and .c come from different runs
)
# The on-disk targets' failures (tools/fuzz/ondisk.py): python -m export on edited run sets, and every CLI's
# output path made hostile. Their clean endings: refused (one line, the disk as it was), exported / ran.
ON_DISK_TARGETS = ("export", "output_path")
ON_DISK_FAILURES = ("crash", "hang", "traceback", "refusal_not_one_line", "destructive", "half_written")
# The seed decoders of the codegen target: tools.exactness.base_decoder indices (0 transposed, 1 sub-pixel).
ATTEMPT_TIMEOUT_S = 60.0
EXAMPLES_PER_OUTCOME = 3


@dataclasses.dataclass(frozen=True)
class FuzzConfig:
    artifacts: str
    model: str | None = None  # the VAE whose export is mutated (default: the first found)
    data: str | None = None  # MNIST .npz whose test split seeds the .npz mutations
    seed: int = 0
    model_mutations: int = 1000  # each for sha256 updated and for sha256 stale
    manifest_mutations: int = 200
    input_mutations: int = 200
    npz_mutations: int = 200
    firmware_mutations: int = 100
    codegen_mutations: int = 500
    export_mutations: int = 200  # edited run sets through python -m export (the base: artifacts, or trained)
    output_path_mutations: int = 100  # CLIs writing to a read-only folder, a FIFO, a full disk...
    progress: bool = False


@dataclasses.dataclass(frozen=True)
class FuzzResult:
    counts: dict  # target -> outcome -> n
    by_kind: dict  # target -> mutation kind -> outcome -> n
    examples: dict  # target -> outcome -> [short text]
    seconds: dict  # target -> wall seconds
    config: dict

    def failures(self, target: str) -> int:
        return sum(self.counts.get(target, {}).get(o, 0) for o in failure_outcomes(target))

    def to_json(self) -> dict:
        return dataclasses.asdict(self) | {"failure_outcomes": list(FAILURES), "goals": goals(self)}


def failure_outcomes(target: str) -> tuple[str, ...]:
    if target == "codegen":
        return CODEGEN_FAILURES
    return ON_DISK_FAILURES if target in ON_DISK_TARGETS else FAILURES


class Worker:
    """One spawned process that runs attempts; a death by signal or a hang is an outcome, then a new worker."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.ctx = multiprocessing.get_context("spawn")
        self.proc = None
        self.restarts = 0

    def _start(self):
        from .worker import serve

        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=serve, args=(child, str(self.log_path)), daemon=True)
        self.proc.start()
        child.close()

    def run(self, name: str, timeout: float = ATTEMPT_TIMEOUT_S, **kwargs) -> tuple[str, object]:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send((name, kwargs))
        try:
            if self.conn.poll(timeout):
                return self.conn.recv()
        except (EOFError, OSError):  # the pipe closed: the worker is dying, let it finish
            self.proc.join(30)
        alive = self.proc.is_alive()
        if alive:
            self.proc.kill()
        self.proc.join(5)
        code = self.proc.exitcode
        self.proc, self.restarts = None, self.restarts + 1
        if alive:
            return "hang", f"no answer within {timeout:.0f} s"
        return "crash", f"worker exit code {code}" + (
            f" (signal {-code})" if code is not None and code < 0 else ""
        )

    def close(self):
        if self.proc is not None and self.proc.is_alive():
            self.conn.close()
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _signature_of(entry: dict) -> dict:
    return {"inputs": entry["inputs"], "outputs": entry["outputs"]}


def _same_outputs(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b, strict=True)
    )


class Tally:
    def __init__(self):
        self.counts: dict[str, Counter] = {}
        self.by_kind: dict[str, dict[str, Counter]] = {}
        self.examples: dict[str, dict[str, list]] = {}

    def add(self, target: str, kind: str, outcome: str, detail: str = "") -> None:
        self.counts.setdefault(target, Counter())[outcome] += 1
        self.by_kind.setdefault(target, {}).setdefault(kind.split(":")[0], Counter())[outcome] += 1
        ex = self.examples.setdefault(target, {}).setdefault(outcome, [])
        if len(ex) < EXAMPLES_PER_OUTCOME and detail:
            ex.append(f"[{kind}] {detail[-600:] if outcome == 'traceback' else detail[:300]}")


def classify_refusal(payload: str) -> str:
    return "refused" if "\n" not in payload.strip() else "refusal_not_one_line"


class Scratch:
    """A copy of the export folders; each attempt writes one mutation into it and restores it afterwards."""

    def __init__(self, root: Path, folders: dict[str, Path]):
        self.root = root
        self.folders = {}
        for name, src in folders.items():
            dst = root / name / "export"
            shutil.copytree(src, dst)
            self.folders[name] = dst
        self.pristine = {
            name: {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
            for name, folder in self.folders.items()
        }

    def manifest(self, name: str) -> dict:
        return json.loads(self.pristine[name]["manifest.json"])

    def write(self, name: str, filename: str, data: bytes) -> None:
        (self.folders[name] / filename).write_bytes(data)

    def restore(self, name: str) -> None:
        folder = self.folders[name]
        for p in folder.iterdir():
            if p.name not in self.pristine[name]:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        for fname, data in self.pristine[name].items():
            path = folder / fname
            if not path.is_file() or path.read_bytes() != data:
                path.write_bytes(data)


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="mutation")


def run_fuzz(cfg: FuzzConfig) -> FuzzResult:
    from runtime.manifest import find_manifests

    # The codegen target builds its own decoders: a run of it alone needs no export.
    export_targets = (
        cfg.model_mutations,
        cfg.manifest_mutations,
        cfg.input_mutations,
        cfg.npz_mutations,
        cfg.firmware_mutations,
    )
    manifests = find_manifests(cfg.artifacts) if any(export_targets) else {}
    vaes = [n for n, m in manifests.items() if m.kind == "vae"]
    if not vaes and any(export_targets):
        from runtime.errors import VaeEdgeError

        raise VaeEdgeError(f"no VAE export under {cfg.artifacts}; run make export (or pass --artifacts)")
    model = cfg.model or (VAE_MODELS[-1] if VAE_MODELS[-1] in vaes else vaes[0]) if vaes else None
    folders = {model: manifests[model].folder} if model else {}
    if "classifier" in manifests:
        folders["classifier"] = manifests["classifier"].folder
    tally, seconds = Tally(), {}
    with tempfile.TemporaryDirectory(prefix="vae-edge-fuzz-") as tmp:
        scratch = Scratch(Path(tmp), folders)
        worker = Worker(Path(tmp) / "worker.log")
        try:
            targets = [
                (
                    "model_sha_updated",
                    cfg.model_mutations,
                    lambda: _fuzz_models(scratch, worker, tally, cfg, True),
                ),
                (
                    "model_sha_stale",
                    cfg.model_mutations,
                    lambda: _fuzz_models(scratch, worker, tally, cfg, False),
                ),
                ("manifest", cfg.manifest_mutations, lambda: _fuzz_manifests(scratch, worker, tally, cfg)),
                ("input", cfg.input_mutations, lambda: _fuzz_inputs(scratch, worker, tally, cfg)),
                ("npz", cfg.npz_mutations, lambda: _fuzz_npz(Path(tmp), worker, tally, cfg)),
                (
                    "firmware",
                    cfg.firmware_mutations,
                    lambda: _fuzz_firmware(scratch, worker, tally, cfg, model),
                ),
                ("codegen", cfg.codegen_mutations, lambda: _fuzz_codegen(Path(tmp), worker, tally, cfg)),
            ]
            if cfg.export_mutations or cfg.output_path_mutations:
                targets += _on_disk_targets(cfg, Path(tmp), worker, tally)
            for name, n, fn in targets:
                if n > 0:
                    t0 = time.perf_counter()
                    fn()
                    seconds[name] = round(time.perf_counter() - t0, 1)
        finally:
            worker.close()
    # zeros included: a report must show the failures it did not find
    always = {t: ("refused", *failure_outcomes(t)) for t in tally.counts}
    return FuzzResult(
        counts={t: {o: c.get(o, 0) for o in always[t]} | dict(c) for t, c in tally.counts.items()},
        by_kind={t: {k: dict(c) for k, c in kinds.items()} for t, kinds in tally.by_kind.items()},
        examples=tally.examples,
        seconds=seconds,
        config=dataclasses.asdict(cfg) | {"fuzzed_model": model},
    )


def _model_entries(scratch: Scratch) -> list[tuple[str, dict]]:
    return [
        (name, a)
        for name in scratch.folders
        for a in scratch.manifest(name)["artifacts"]
        if a["format"] in ("tflite", "onnx")
    ]


def _references(scratch, worker, entries) -> dict:
    refs = {}
    for name, a in entries:
        status, payload = worker.run("model", folder=str(scratch.folders[name]), artifact=a["path"])
        if status != "ok":
            raise RuntimeError(f"the unmutated {a['path']} does not run ({status}): {payload}")
        refs[a["path"]] = payload["outputs"]
    return refs


def _fuzz_models(scratch: Scratch, worker: Worker, tally: Tally, cfg: FuzzConfig, update_sha: bool) -> None:
    target = "model_sha_updated" if update_sha else "model_sha_stale"
    rng = np.random.default_rng([cfg.seed, 1 if update_sha else 2])
    entries = _model_entries(scratch)
    refs = _references(scratch, worker, entries)
    for _ in _progress(range(cfg.model_mutations), cfg.model_mutations, target, cfg.progress):
        name, entry = entries[int(rng.integers(len(entries)))]
        original = scratch.pristine[name][entry["path"]]
        kind, data = mutate.mutate_model(original, entry["format"], rng)
        kind = f"{kind}:{entry['format']}"
        scratch.write(name, entry["path"], data)
        if update_sha:
            m = scratch.manifest(name)
            e = next(a for a in m["artifacts"] if a["path"] == entry["path"])
            e["sha256"], e["size_bytes"] = _sha(data), len(data)
            scratch.write(name, "manifest.json", json.dumps(m).encode())
        status, payload = worker.run("model", folder=str(scratch.folders[name]), artifact=entry["path"])
        scratch.restore(name)
        if status == "ok":
            if _same_outputs(payload["outputs"], refs[entry["path"]]):
                outcome, detail = "same_output", ""
            elif payload["signature"] != _signature_of(entry):
                outcome, detail = "silent_diff_io_detectable", f"{entry['path']}: {payload['signature']}"
            else:
                outcome, detail = "silent_diff_io_same", entry["path"]
        elif status == "refused":
            outcome, detail = classify_refusal(payload), payload
        else:
            outcome, detail = status, f"{entry['path']}: {payload}"
        tally.add(target, kind, outcome, detail)


def _selections(manifest: dict) -> list[dict]:
    """Every distinct way a user picks an artifact of this manifest (Decoder.from_manifest's keys)."""
    out = []
    for a in manifest["artifacts"]:
        if a["format"] not in ("tflite", "onnx"):
            continue
        if a["role"] == "decoder":
            keys = ("precision", "graph", "batch", "format", "io")
            out.append({"role": "decoder", **{k: a[k] for k in keys}})
        else:
            out.append({"role": a["role"], "batch": a["batch"]})
    return out


def _fuzz_manifests(scratch: Scratch, worker: Worker, tally: Tally, cfg: FuzzConfig) -> None:
    rng = np.random.default_rng([cfg.seed, 3])
    names = list(scratch.folders)
    # A valid copy of one artifact outside the export folder: the escape a hostile manifest would aim at.
    outside = scratch.root / "outside"
    outside.mkdir(exist_ok=True)
    for name in names:
        for a in _model_entries(scratch):
            if a[0] == name:
                (outside / a[1]["path"]).write_bytes(scratch.pristine[name][a[1]["path"]])
    for i in _progress(range(cfg.manifest_mutations), cfg.manifest_mutations, "manifest", cfg.progress):
        name = names[i % len(names)]
        original = scratch.manifest(name)
        mutated_entry = original["artifacts"][int(rng.integers(len(original["artifacts"])))]
        outside_file = str(outside / mutated_entry["path"]) if mutated_entry["format"] != "c" else None
        kind, data = mutate.mutate_manifest(original, rng, outside_file=outside_file)
        scratch.write(name, "manifest.json", data)
        status, payload = worker.run(
            "manifest", folder=str(scratch.folders[name]), selections=_selections(original)
        )
        if original.get("kind", "vae") == "vae":  # the same file through the CLI: exit 2 and one line
            cli = worker.run(
                "sample_cli", artifacts=str(scratch.root), model=name, out=str(scratch.root / "s.png")
            )
            _tally_simple(tally, "manifest_cli", kind, cli, escape=kind == "escape_path")
        scratch.restore(name)
        if status == "ok":
            outcome = (
                "escape_accepted"
                if kind == "escape_path" or "evil" in data.decode(errors="replace")
                else "accepted"
            )
            detail = data.decode(errors="replace")[:200] if outcome == "escape_accepted" else ""
        elif status == "refused":
            outcome, detail = classify_refusal(payload), payload
        else:
            outcome, detail = status, str(payload)
        tally.add("manifest", kind, outcome, detail)


def _tally_simple(tally: Tally, target: str, kind: str, result: tuple, escape: bool = False) -> None:
    status, payload = result
    if status == "ok":
        outcome, detail = ("escape_accepted", kind) if escape else ("accepted", "")
    elif status == "refused":
        outcome, detail = classify_refusal(payload), payload
    else:
        outcome, detail = status, str(payload)
    tally.add(target, kind, outcome, detail)


def _fuzz_inputs(scratch: Scratch, worker: Worker, tally: Tally, cfg: FuzzConfig) -> None:
    rng = np.random.default_rng([cfg.seed, 4])
    entries = _model_entries(scratch)
    for _ in _progress(range(cfg.input_mutations), cfg.input_mutations, "input", cfg.progress):
        name, entry = entries[int(rng.integers(len(entries)))]
        role = entry["role"]
        m = scratch.manifest(name)
        n = int(rng.integers(1, 2 * entry["batch"] + 2))
        shape = (n, m["latent_dim"]) if role == "decoder" else (n, 28, 28, 1)
        kind, value = mutate.mutate_input(role, shape, rng)
        if role == "decoder":
            target = "decode_iter" if rng.random() < 0.3 else "decode"
        else:
            target = "encode" if role == "encoder" else "predict"
        chunk_rows = None
        if target == "decode_iter":
            chunk_rows = [1, 3, 4096, 0, -2, "8", 2.5][int(rng.integers(7))]
            kind = f"{kind}:chunk_rows={chunk_rows!r}"
        status, payload = worker.run(
            "input",
            folder=str(scratch.folders[name]),
            artifact=entry["path"],
            target=target,
            value=value,
            chunk_rows=chunk_rows,
        )
        if status == "ok":
            outcome, detail = ("accepted", "") if payload["finite"] else ("nonfinite_output", entry["path"])
        elif status == "refused":
            outcome, detail = classify_refusal(payload), payload
        else:
            outcome, detail = status, str(payload)
        tally.add("input", f"{role}.{kind}", outcome, detail)


def _fuzz_npz(tmp: Path, worker: Worker, tally: Tally, cfg: FuzzConfig) -> None:
    from runtime.data import load_mnist

    rng = np.random.default_rng([cfg.seed, 5])
    if cfg.data:
        mnist = load_mnist(cfg.data, test_only=True)
        x, y = mnist.x_test[:200], mnist.y_test[:200]
    else:  # synthetic digits: the loader's checks do not look at the pixels
        x = rng.integers(0, 256, (200, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, 200, dtype=np.uint8)
    arrays = {"x_train": x[:150], "y_train": y[:150], "x_test": x[150:], "y_test": y[150:]}
    path = tmp / "mnist_mutated.npz"
    for _ in _progress(range(cfg.npz_mutations), cfg.npz_mutations, "npz", cfg.progress):
        kind, data = mutate.mutate_npz(arrays, rng)
        path.write_bytes(data)
        status, payload = worker.run("npz", path=str(path))
        if status == "ok":
            outcome, detail = "accepted", ""
        elif status == "refused":
            outcome, detail = classify_refusal(payload), payload
        else:
            outcome, detail = status, str(payload)
        tally.add("npz", kind, outcome, detail)


def _fuzz_firmware(scratch: Scratch, worker: Worker, tally: Tally, cfg: FuzzConfig, model: str) -> None:
    rng = np.random.default_rng([cfg.seed, 6])
    entries = [
        a
        for a in scratch.manifest(model)["artifacts"]
        if a["format"] == "tflite" and a["precision"] == "int8" and a["io"] == "int8" and a["batch"] == 1
    ]
    folder = str(scratch.folders[model])
    for a in entries:
        status, payload = worker.run("firmware", folder=folder, artifact=a["path"])
        if status != "ok":
            raise RuntimeError(f"firmware_sim cannot run the unmutated {a['path']} ({status}): {payload}")
    for _ in _progress(range(cfg.firmware_mutations), cfg.firmware_mutations, "firmware", cfg.progress):
        entry = entries[int(rng.integers(len(entries)))]
        kind, data = mutate.mutate_model(scratch.pristine[model][entry["path"]], "tflite", rng)
        scratch.write(model, entry["path"], data)
        m = scratch.manifest(model)
        e = next(x for x in m["artifacts"] if x["path"] == entry["path"])
        e["sha256"], e["size_bytes"] = _sha(data), len(data)
        scratch.write(model, "manifest.json", json.dumps(m).encode())
        status, payload = worker.run("firmware", folder=folder, artifact=entry["path"])
        scratch.restore(model)
        if status == "ok":
            outcome, detail = (
                ("ran", "") if payload["bit_exact"] else ("ran_reference_differs", entry["path"])
            )
        elif status == "refused":
            outcome, detail = classify_refusal(payload), payload
        else:
            outcome, detail = status, f"{entry['path']}: {payload}"
        tally.add("firmware", kind, outcome, detail)


def _fuzz_codegen(tmp: Path, worker: Worker, tally: Tally, cfg: FuzzConfig) -> None:
    from .codegen_target import fuzz_codegen  # imports the generator and TensorFlow: only when it runs

    fuzz_codegen(tmp, worker, tally, cfg, lambda it, total, desc: _progress(it, total, desc, cfg.progress))


def _on_disk_targets(cfg: FuzzConfig, tmp: Path, worker: Worker, tally: Tally) -> list[tuple]:
    """The export and output-path targets, on a trained model folder with an export: the one under
    ``cfg.artifacts`` (copied, never written), else a tiny run set trained and exported here."""
    from . import ondisk

    base = ondisk.find_base(cfg.artifacts, cfg.model)
    if base is None:
        base = ondisk.train_tiny_base(tmp / "base", cfg.data)
        argv = ["--model", base.name, "--artifacts", str(base.parent), "--reports", str(tmp / "base-reports")]
        status, payload = worker.run(
            "export_cli", timeout=ondisk.EXPORT_TIMEOUT_S, argv=[*argv, *ondisk.EXPORT_ARGS]
        )
        if status != "ok" or payload["code"] != 0:
            raise RuntimeError(f"exporting the fuzz base failed ({status}): {payload}")

    def progress(iterable, total, desc):
        return _progress(iterable, total, desc, cfg.progress)

    def export():
        work = tmp / "export-fuzz"
        work.mkdir()
        rng = np.random.default_rng([cfg.seed, 8])
        ondisk.fuzz_export(base, work, worker, tally, cfg.export_mutations, rng, progress)

    def output_paths():
        work = tmp / "output-fuzz"
        work.mkdir()
        rng = np.random.default_rng([cfg.seed, 9])
        ondisk.fuzz_output_paths(
            base.parent, base.name, work, tally, cfg.output_path_mutations, rng, progress
        )

    return [
        ("export", cfg.export_mutations, export),
        ("output_path", cfg.output_path_mutations, output_paths),
    ]


def goals(result: FuzzResult) -> dict:
    """The issue's goals, each with the figure it is judged on."""
    c = result.counts
    out = {}
    for t in ("model_sha_updated", "model_sha_stale", "firmware"):
        if t in c:
            bad = {o: c[t].get(o, 0) for o in FAILURES}
            out[t] = {"failures": bad, "met": not any(bad.values())}
    if "codegen" in c:
        bad = {o: c["codegen"].get(o, 0) for o in CODEGEN_FAILURES}
        out["codegen"] = {"failures": bad, "met": not any(bad.values())}
    for t in ON_DISK_TARGETS:
        if t in c:
            bad = {o: c[t].get(o, 0) for o in ON_DISK_FAILURES}
            out[t] = {"failures": bad, "met": not any(bad.values())}
    for t in ("manifest", "manifest_cli", "input", "npz"):
        if t in c:
            bad = {
                o: c[t].get(o, 0)
                for o in ("crash", "hang", "traceback", "refusal_not_one_line", "escape_accepted")
            }
            out[t] = {"failures": bad, "met": not any(bad.values())}
    return out
