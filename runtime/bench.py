"""Latency bench: every exported decoder in its own runtime, at 1 thread and at all cores.

    python -m runtime bench --artifacts artifacts --invokes 1000

Per artifact and thread count: load time, warm-up, then ``invokes`` timed invokes (batch-1 artifacts: p50/p90/
p99 in µs) or ``batch_invokes`` timed invokes (batch-N artifacts: throughput in images/s); file size; the peak
RSS of a fresh process that loaded and ran only that artifact. Inputs are pre-quantized prior samples, so the
timings are the interpreter's alone.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import platform
import resource
import time

import numpy as np

WARMUP_INVOKES = 20


def bench_one(
    folder: str, artifact: str, threads: int, invokes: int, batch_invokes: int, seed: int = 0
) -> dict:
    """Runs in a fresh process (see :func:`bench_all`), so ``peak_rss_kb`` is this artifact's alone."""
    from .backends import quantize
    from .manifest import load_manifest
    from .models import Decoder

    manifest = load_manifest(folder)
    entry = manifest.by_path(artifact)
    t0 = time.perf_counter()
    decoder = Decoder(manifest, entry, num_threads=threads)
    load_ms = (time.perf_counter() - t0) * 1e3
    model = decoder.model
    info = model.inputs[0]
    z = decoder.model_input(manifest.prior.sample(entry["batch"], seed=seed))
    raw = [quantize(z, info) if info.quantized else z.astype(np.float32)]
    n = invokes if entry["batch"] == 1 else batch_invokes
    for _ in range(min(WARMUP_INVOKES, n)):  # never warm up longer than we time (emulated boards are slow)
        model.run_raw(raw)
    times = np.empty(n)
    for i in range(n):
        t = time.perf_counter_ns()
        model.run_raw(raw)
        times[i] = (time.perf_counter_ns() - t) / 1e3
    return {
        "model": manifest.model,
        "artifact": artifact,
        "format": entry["format"],
        "precision": entry["precision"],
        "graph": entry["graph"],
        "io": entry["io"],
        "batch": entry["batch"],
        "threads": threads,
        "backend": model.backend,
        "invokes": n,
        "load_ms": load_ms,
        "p50_us": float(np.percentile(times, 50)),
        "p90_us": float(np.percentile(times, 90)),
        "p99_us": float(np.percentile(times, 99)),
        "mean_us": float(times.mean()),
        "throughput_per_s": entry["batch"] * 1e6 / float(times.mean()),
        "size_bytes": entry["size_bytes"],
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def bench_all(jobs: list[tuple], progress=None, isolate: bool = True) -> list[dict]:
    """Each job in its own spawned process (one task per child): clean RSS, and a crash cannot take us down.

    ``isolate=False`` runs them in this process (peak RSS is then the whole run's): for emulated boards,
    where starting a Python process costs tens of seconds.
    """
    if not isolate:
        out = []
        for job in jobs:
            try:
                rec = {**bench_one(*job), "status": "ok"}
            except Exception as exc:  # noqa: BLE001 - one bad artifact is recorded, the others still run
                rec = failed_record(job, exc)
            out.append(rec)
            if progress:
                progress(out[-1])
        return out
    ctx = multiprocessing.get_context("spawn")
    out = []
    for job in jobs:
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=ctx, max_tasks_per_child=1
        ) as pool:
            try:
                rec = {**pool.submit(bench_one, *job).result(), "status": "ok"}
            except concurrent.futures.process.BrokenProcessPool:
                rec = {
                    **failed_record(job, None),
                    "error": "the interpreter process crashed",
                    "status": "crashed",
                }
            except Exception as exc:  # noqa: BLE001 - raised in the child, re-raised here by the pool
                rec = failed_record(job, exc)
        out.append(rec)
        if progress:
            progress(rec)
    return out


def failed_record(job: tuple, exc: BaseException | None) -> dict:
    """The report line of a job that did not finish: status and the one-line error, so the run goes on."""
    from .errors import VaeEdgeError

    folder, artifact, threads = job[0], job[1], job[2]
    model = os.path.basename(os.path.dirname(os.path.normpath(folder)))
    if exc is None:
        error = ""
    elif isinstance(exc, VaeEdgeError):
        error = " ".join(str(exc).split())
    else:
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return {"model": model, "artifact": artifact, "threads": threads, "status": "error", "error": error}


CPU_NAME_KEYS = ("model name", "hardware", "model")  # x86 / older Arm kernels, then a Pi's board name


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's name from /proc/cpuinfo: ``model name`` first (``model`` is a bare number on x86), then
    ``Hardware`` and ``Model`` (a Raspberry Pi's board); else what the platform module knows."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as fh:
                cpuinfo = fh.read()
        except OSError:
            cpuinfo = ""
    found: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key in CPU_NAME_KEYS and value.strip():
            found.setdefault(key, value.strip())
    for key in CPU_NAME_KEYS:
        if key in found:
            return found[key]
    return platform.processor() or platform.machine()


def platform_info() -> dict:
    import importlib.metadata as md

    versions = {}
    for name in ("numpy", "ai-edge-litert", "tflite-runtime", "onnxruntime"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "versions": versions,
    }


def bench_markdown(records: list[dict], info: dict) -> str:
    """reports/bench.md: the platform line, then one row per artifact and thread count."""
    lines = [
        "# Decoder latency",
        "",
        f"Platform: {info['cpu']}, {info['cores']} cores, {info['machine']}, {info['system']}, Python "
        f"{info['python']}; " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".",
        "",
        "| model | artifact | backend | threads | batch | p50 µs | p90 µs | p99 µs | images/s | load ms | size KB | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if "error" in r:
            lines.append(
                f"| {r.get('model', '?')} | {r['artifact']} | — | {r['threads']} | — | {r['error']} |||||||"
            )
            continue
        lines.append(
            f"| {r['model']} | {r['artifact']} | {r['backend']} | {r['threads']} | {r['batch']} | "
            f"{r['p50_us']:.0f} | {r['p90_us']:.0f} | {r['p99_us']:.0f} | {r['throughput_per_s']:.0f} | "
            f"{r['load_ms']:.1f} | {r['size_bytes'] / 1024:.0f} | {r['peak_rss_kb'] / 1024:.0f} |"
        )
    return "\n".join(lines) + "\n"
