"""What a fuzz worker process runs: one attempt per task, its ending reported as (status, payload).

status: ``ok`` (payload: outputs and the loaded model's tensors), ``refused`` (payload: the VaeEdgeError's
message), ``traceback`` (payload: the formatted traceback of any other exception).
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import numpy as np


def _model_for(manifest, entry):
    from runtime.models import Classifier, Decoder, Encoder

    return {"decoder": Decoder, "encoder": Encoder, "classifier": Classifier}[entry["role"]](manifest, entry)


def _run_loaded(obj, seed: int):
    from runtime.models import Decoder

    rng = np.random.default_rng(seed)
    rows = obj.batch + 1  # one padded chunk too
    if isinstance(obj, Decoder):
        return [obj.decode(obj.manifest.prior.sample(rows, seed=seed))]
    images = rng.random((rows, 28, 28, 1), np.float32)
    outs = obj._outputs(images)
    return [outs[k] for k in obj.output_names]


def run_model(folder: str, artifact: str, seed: int = 0) -> dict:
    """Load one artifact the way the runtime does (manifest, sha256, I/O check) and run it on fixed inputs."""
    from runtime.manifest import load_manifest

    m = load_manifest(folder)
    obj = _model_for(m, m.by_path(artifact))
    outs = _run_loaded(obj, seed)
    return {
        "outputs": outs,
        "signature": {
            "inputs": [t.to_json() for t in obj.model.inputs],
            "outputs": [t.to_json() for t in obj.model.outputs],
        },
    }


def run_manifest(folder: str, selections: list[dict], seed: int = 0) -> dict:
    """What users of a manifest do: load it, verify every file (pi-bundle), and run each selection."""
    from runtime.manifest import load_manifest
    from runtime.models import Classifier, Decoder, Encoder

    m = load_manifest(folder)
    for entry in m.artifacts:
        m.verify(entry)
    ran = 0
    for sel in selections:
        sel = dict(sel)
        role = sel.pop("role")
        if role == "decoder":
            obj = Decoder.from_manifest(m, **sel)
        else:
            obj = (Encoder if role == "encoder" else Classifier).from_manifest(m, batch=sel.get("batch"))
        _run_loaded(obj, seed)
        ran += 1
    return {"ran": ran}


def run_sample_cli(artifacts: str, model: str, out: str) -> dict:
    """``python -m runtime sample`` in-process: exit 2 with one ``error:`` line is the clean refusal."""
    import contextlib
    import io

    from runtime.__main__ import main, parse_args
    from runtime.errors import VaeEdgeError

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(
            parse_args(["sample", "--artifacts", artifacts, "--model", model, "-n", "3", "--out", out])
        )
    text = err.getvalue().strip()
    if code == 0:
        return {"code": 0}
    if code == 2 and text.startswith("error: "):
        raise VaeEdgeError(text.removeprefix("error: "))  # reported as a refusal, one line or not
    raise RuntimeError(f"exit {code}: {text}")


def run_export_cli(argv: list[str]) -> dict:
    """``python -m export ARGV`` in-process (TensorFlow stays loaded between attempts): its exit code and the
    lines it printed to sys.stderr. An exception other than VaeEdgeError/OSError escapes main as a traceback."""
    import contextlib
    import io

    from export.__main__ import main, parse_args

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(parse_args(argv))
    return {"code": code, "stderr": err.getvalue()}


def run_input(folder: str, artifact: str, target: str, value, chunk_rows=None) -> dict:
    from runtime.manifest import load_manifest

    m = load_manifest(folder)
    obj = _model_for(m, m.by_path(artifact))
    if target == "decode":
        outs = [obj.decode(value)]
    elif target == "decode_iter":
        outs = list(obj.decode_iter(value, chunk_rows=chunk_rows))
    elif target == "encode":
        outs = list(obj.encode(value))
    else:
        outs = list(obj.predict(value))
    return {"finite": all(bool(np.all(np.isfinite(o))) for o in outs)}


def run_npz(path: str) -> dict:
    from runtime.data import load_mnist

    full = load_mnist(path)
    test = load_mnist(path, test_only=True)
    return {"images": int(len(full.images("test")) + len(test.images("test")))}


def run_firmware(folder: str, artifact: str, latents: int = 2, seed: int = 0) -> dict:
    """firmware_sim's loading path: runtime check, flatbuffer graph, integer reference, TFLM arena and run."""
    from firmware_sim.graph import load_graph
    from firmware_sim.simulate import integer_reference
    from firmware_sim.tflm import TflmModel, smallest_arena
    from runtime.manifest import load_manifest
    from runtime.models import Decoder

    m = load_manifest(folder)
    decoder = Decoder(m, m.by_path(artifact))
    path = decoder.model.path
    z = np.random.default_rng(seed).integers(-128, 128, (latents, 1, decoder.input_size)).astype(np.int8)
    data = path.read_bytes()
    graph = load_graph(path)
    reference = integer_reference(path, graph, z[0])
    tflm = TflmModel(data, smallest_arena(data, z[0], hi=1 << 20))
    same = all(np.array_equal(reference.run(x), tflm.run(x)) for x in z)
    return {"bit_exact": same}


_HOST_BUILDS: dict[str, Path] = {}  # sha256 of a generated .h + .c -> its sanitized host_check (this worker)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def run_codegen(path: str, out: str, build: str, seed: int = 0, latents: int = 6) -> dict:
    """``python -m firmware_sim.codegen FILE --out OUT --name fz`` in-process on one (mutated) .tflite, then,
    when it wrote C, that C built for the host under ASan/UBSan and run on int8 latents of the graph's own
    input size, its logits compared with the numpy reference's. Payload: ``outcome`` (see
    harness.CODEGEN_OUTCOMES) and ``detail``.

    ``out`` holds an older pair ``fz_decoder.{h,c}`` and another model's file before the call: a refusal must
    leave the folder byte for byte as it was (else ``destructive`` / ``half_written``); a success must replace
    the pair with two files of this model (both naming its sha256) and touch nothing else."""
    import contextlib
    import hashlib
    import io
    import subprocess

    from firmware_sim import measure
    from firmware_sim.codegen import GeneratedDecoder, lower, main, parse_args, schedule
    from firmware_sim.graph import load_graph
    from firmware_sim.reference import IntegerReference

    out_dir, build_dir = Path(out), Path(build)
    before = _snapshot(out_dir)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(parse_args([path, "--out", out, "--name", "fz"]))
    text = err.getvalue().strip()
    after = _snapshot(out_dir)
    if code != 0:
        if after != before:
            changed = sorted(k for k in before if after.get(k) != before[k])
            extra = sorted(set(after) - set(before))
            outcome = "destructive" if changed else "half_written"
            return {"outcome": outcome, "detail": f"exit {code}; changed {changed}, new {extra}: {text}"}
        if code == 2 and text.startswith("error: ") and "\n" not in text:
            return {"outcome": "refused", "detail": text}
        return {"outcome": "refusal_not_one_line", "detail": f"exit {code}: {text}"}
    data = Path(path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    h_path, c_path = out_dir / "fz_decoder.h", out_dir / "fz_decoder.c"
    others = {k: v for k, v in before.items() if not k.startswith("fz_decoder.")}
    if (
        set(after) != set(before)
        or any(after[k] != v for k, v in others.items())
        or not all(sha in after[p.name].decode(errors="replace").split("\n", 1)[0] for p in (h_path, c_path))
    ):
        return {"outcome": "half_written", "detail": f"after success the folder holds {sorted(after)}"}
    graph = load_graph(path)
    plan = lower(graph, name="fz", graph_kind="transpose", source=Path(path).name, source_sha256=sha)
    gen = GeneratedDecoder(h_path, c_path, plan, schedule(plan))
    key = hashlib.sha256(after["fz_decoder.h"] + after["fz_decoder.c"]).hexdigest()
    exe = _HOST_BUILDS.get(key)
    if exe is None or not exe.is_file():
        folder = build_dir / key[:16]
        folder.mkdir(parents=True, exist_ok=True)
        # A copy of the pair: the next attempt rewrites fz_decoder.{h,c} in out.
        (folder / "fz_decoder.h").write_bytes(after["fz_decoder.h"])
        (folder / "fz_decoder.c").write_bytes(after["fz_decoder.c"])
        gen = GeneratedDecoder(folder / "fz_decoder.h", folder / "fz_decoder.c", plan, gen.schedule)
        try:
            exe = measure.build_host_check(gen, folder)
        except Exception as exc:  # a compiler error is the generator's failure, not a refusal
            return {"outcome": "c_does_not_compile", "detail": " ".join(str(exc).split())[:600]}
        _HOST_BUILDS[key] = exe
    rng = np.random.default_rng(seed)
    d = plan.input_size
    zs = rng.integers(-128, 128, (latents, d)).astype(np.int8)
    zs[0], zs[1] = -128, 127  # the corners: the largest sums
    z_path, o_path = exe.parent / "latents.bin", exe.parent / "logits.bin"
    zs.tofile(z_path)
    res = subprocess.run([str(exe), str(z_path), str(o_path)], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-6:])
        if "AddressSanitizer" in res.stderr:
            return {"outcome": "out_of_bounds", "detail": tail}
        if "runtime error" in res.stderr:
            return {"outcome": "undefined_behaviour", "detail": tail}
        return {"outcome": "c_failed", "detail": f"exit {res.returncode}: {tail}"}
    ours = np.fromfile(o_path, np.int8).reshape(latents, -1)
    try:
        reference = IntegerReference(graph)
        theirs = [np.asarray(reference.run(z.reshape(1, -1))).reshape(-1) for z in zs]
    except Exception as exc:  # the reference does not take this graph: nothing to compare with
        return {"outcome": "ran_reference_refused", "detail": f"{type(exc).__name__}: {exc}"[:300]}
    wrong = sum(int(not np.array_equal(a, b)) for a, b in zip(ours, theirs, strict=True))
    if wrong:
        return {
            "outcome": "silently_wrong",
            "detail": f"{wrong} of {latents} latents differ from the reference",
        }
    return {"outcome": "ran", "detail": ""}


def run_selftest(action: str) -> dict:
    """Endings the harness must tell apart (tests/test_fuzz.py): a segfault, a hang, a bare exception."""
    import signal
    import time

    if action == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if action == "hang":
        time.sleep(3600)
    if action == "raise":
        raise KeyError("a bare exception")
    return {"action": action}


RUNNERS = {
    "selftest": run_selftest,
    "model": run_model,
    "manifest": run_manifest,
    "sample_cli": run_sample_cli,
    "input": run_input,
    "npz": run_npz,
    "firmware": run_firmware,
    "codegen": run_codegen,
    "export_cli": run_export_cli,
}


def attempt(name: str, kwargs: dict) -> tuple[str, object]:
    from runtime.errors import VaeEdgeError

    try:
        return "ok", RUNNERS[name](**kwargs)
    except VaeEdgeError as exc:
        return "refused", str(exc)
    except Exception:
        return "traceback", traceback.format_exc()


def serve(conn, log_path: str | None = None) -> None:
    """Worker loop: receive (name, kwargs), send (status, payload) until the pipe closes."""
    if log_path:  # interpreters print to fd 2 (XNNPACK banners, TFLM logs): keep them out of the report
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(fd, 1)  # onnxruntime prints its fallback notes to stdout
        os.dup2(fd, 2)
        sys.stdout = os.fdopen(os.dup(1), "w")
        sys.stderr = os.fdopen(os.dup(2), "w")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    while True:
        try:
            name, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(attempt(name, kwargs))
