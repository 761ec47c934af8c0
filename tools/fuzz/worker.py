"""What a fuzz worker process runs: one attempt per task, its ending reported as (status, payload).

status: ``ok`` (payload: outputs and the loaded model's tensors), ``refused`` (payload: the VaeEdgeError's
message), ``traceback`` (payload: the formatted traceback of any other exception).
"""

from __future__ import annotations

import os
import sys
import traceback

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
    from firmware_sim.__main__ import integer_reference
    from firmware_sim.graph import load_graph
    from firmware_sim.tflm import TflmModel, smallest_arena
    from runtime.manifest import load_manifest
    from runtime.models import Decoder

    m = load_manifest(folder)
    path = Decoder(m, m.by_path(artifact)).model.path
    z = np.random.default_rng(seed).integers(-128, 128, (latents, 1, m.latent_dim)).astype(np.int8)
    data = path.read_bytes()
    graph = load_graph(path)
    reference = integer_reference(path, graph, z[0])
    tflm = TflmModel(data, smallest_arena(data, z[0], hi=1 << 20))
    same = all(np.array_equal(reference.run(x), tflm.run(x)) for x in z)
    return {"bit_exact": same}


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
