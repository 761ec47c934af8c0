"""Decode latency of the latent explorer in headless Chromium, beside the Python runtime on the same files.

    python -m tools.web bench --artifacts artifacts --reports reports      # make web-bench

For each browser runtime (vae-edge-wasm, onnxruntime-web, LiteRT.js) the site is built into a temporary folder,
served on 127.0.0.1 and opened per model in fresh browser contexts (empty cache): the time from navigation start
to the first digit on screen (download from localhost, sha256 checks, WASM compile, sessions, first decode;
median of ``loads`` loads), then ``invokes`` timed batch-1 decodes per decoder through the page's own decode
path (after a warm-up; timed ``CHUNK`` at a time, as Chromium's clock is coarse), and, for a fixed set of latents, the page's pixels against ``runtime.Decoder`` on the
same file and against the reference that decoder must match (``agreement_record``: TFLite Micro's int8 logits
for vae-edge-wasm's int8 module, the Python runtime's int8 logits for a float-I/O int8 graph, its pixels within
1e-5 for a float32 graph). The Python runtime times the same files (runtime.bench.bench_one, 1 thread), plus
the runtime's default int8 decoder (TFLite, int8 I/O). Screenshots of each model's page (default runtime) go
to the report folder.
"""

from __future__ import annotations

import gzip
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runtime.bench import bench_one, platform_info
from runtime.errors import VaeEdgeError
from runtime.fileio import ensure_writable_dir, write_bytes_atomic, write_json_atomic, write_text_atomic
from runtime.manifest import find_manifests
from runtime.models import Decoder

from .browser import launch_chromium, open_site_page
from .build import DEFAULT_RUNTIME, RUNTIMES, BuildResult, build_site, python_entries
from .compare import FLOAT32_MAX_ABS, INT8_MAX_ABS, max_logit_steps, page_agreement
from .serve import serving

WARMUP = 200  # untimed decodes first: V8 compiles the optimized code of a big module in the background
# Rounds of timed decodes per decoder; the report keeps each round's p50 and gives the lowest, in the page and
# in Python alike, because on a shared (virtual) machine a burst of someone else's work can slow a whole round.
ROUNDS = 5
# Decodes per timing in the page: Chromium coarsens performance.now() (5 µs steps seen here, on a decode of
# about 110 µs), so each timed sample is the mean of CHUNK consecutive decodes (0.5 µs steps).
CHUNK = 10
FIRST_DECODE_LOADS = (
    5  # page loads per model and runtime, each in a fresh context; the report gives the median
)
AGREEMENT_LATENTS = 16  # prior samples each decoder's pixels are compared on (compare.page_agreement)
PRECISIONS = ("int8", "float32")
SCREENSHOT_VIEWPORTS = {"": {"width": 1100, "height": 1000}, "_phone": {"width": 390, "height": 844}}


@dataclass(frozen=True)
class WebBenchResult:
    platform: dict
    chromium: str
    records: list[dict] = field(default_factory=list)
    screenshots: list[str] = field(default_factory=list)


def _gzip_bytes(paths) -> int:
    return sum(len(gzip.compress(Path(p).read_bytes(), 6)) for p in paths)


def _site_sizes(build: BuildResult, model: str) -> dict:
    out = build.out
    shared = [p for p in out.iterdir() if p.is_file()] + list((out / "runtime").iterdir())
    own = list((out / "models" / model).iterdir())
    return {
        "site_bytes": build.site_bytes(model),
        "site_gzip_bytes": _gzip_bytes(shared + own),
        "runtime_bytes": build.runtime_bytes,
        "model_bytes": next(m.size_bytes for m in build.models if m.name == model),
    }


def _python_p50s(folder, artifact: str, invokes: int, rounds: int) -> list[float]:
    return [bench_one(str(folder), artifact, 1, invokes, 10)["p50_us"] for _ in range(rounds)]


def bench_web(
    *,
    artifacts,
    reports,
    runtimes: tuple[str, ...] = tuple(RUNTIMES),
    invokes: int = 500,
    rounds: int = ROUNDS,
    loads: int = FIRST_DECODE_LOADS,
    chromium: str | None = None,
) -> WebBenchResult:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise VaeEdgeError(
            "playwright is not installed; run make setup (requirements-dev.txt pins it)"
        ) from None

    reports = ensure_writable_dir(reports)
    manifests = {k: m for k, m in find_manifests(artifacts).items() if m.kind == "vae"}
    records, shots = [], []
    with sync_playwright() as p, tempfile.TemporaryDirectory(prefix="vae-edge-web-") as tmp:
        browser = launch_chromium(p, chromium)
        version = browser.version
        steps = tqdm(total=len(runtimes) * max(1, len(manifests)), desc="web bench", unit="model")
        for runtime_name in runtimes:
            build = build_site(artifacts=artifacts, out=Path(tmp) / runtime_name, runtime=runtime_name)
            with serving(build.out) as url:
                for name, manifest in manifests.items():
                    opened = open_site_page(browser, f"{url}?model={name}")
                    page, errors = opened.page, opened.errors
                    state = page.evaluate("vaeEdge.state()")
                    if state["error"]:
                        raise VaeEdgeError(f"the {runtime_name} page for {name} stopped: {state['error']}")
                    page.evaluate("vaeEdge.idle()")
                    entries = python_entries(manifest, RUNTIMES[runtime_name])
                    z = manifest.prior.sample(AGREEMENT_LATENTS, seed=11)
                    first = [state["firstDecodeMs"]] + [
                        _first_decode_ms(browser, f"{url}?model={name}") for _ in range(loads - 1)
                    ]
                    rec = {
                        "runtime": runtime_name,
                        "runtime_version": build.runtime_version,
                        "model": name,
                        "first_decode_ms": float(np.median(first)),
                        "first_decode_ms_all": first,
                        "load_phases_ms": state["phases"],
                        "console_errors": len(errors),
                        **_site_sizes(build, name),
                    }
                    for precision in PRECISIONS:
                        entry = entries[precision]
                        round_times = [
                            np.asarray(
                                page.evaluate(f"vaeEdge.bench('{precision}', {invokes}, {WARMUP}, {CHUNK})")
                            )
                            for _ in range(rounds)
                        ]
                        round_p50s = [float(np.percentile(t, 50) * 1e3) for t in round_times]
                        times = round_times[int(np.argmin(round_p50s))]
                        python_p50s = _python_p50s(manifest.folder, entry["path"], invokes, rounds)
                        in_page = np.asarray(page.evaluate(f"vaeEdge.decode('{precision}', {z.tolist()})"))
                        rec[precision] = {
                            "artifact": entry["path"],
                            "p50_us": min(round_p50s),  # the best round's; that round's p90 and mean
                            "p50_us_rounds": round_p50s,
                            "p90_us": float(np.percentile(times, 90) * 1e3),
                            "mean_us": float(times.mean() * 1e3),
                            "invokes": int(len(times)) * CHUNK,
                            "decodes_per_timing": CHUNK,
                            "rounds": rounds,
                            "python_p50_us": min(python_p50s),
                            "python_p50_us_rounds": python_p50s,
                            **agreement_record(manifest, entry, z, in_page),
                        }
                    if runtime_name == DEFAULT_RUNTIME:
                        for suffix, viewport in SCREENSHOT_VIEWPORTS.items():
                            shots.append(
                                _screenshot(browser, url, name, viewport, reports / f"web_{name}{suffix}.png")
                            )
                    page.context.close()
                    records.append(rec)
                    steps.update()
        steps.close()
        browser.close()
    for rec in records:  # the Python runtime's default int8 decoder (TFLite, int8 I/O), for reference
        m = manifests[rec["model"]]
        default = Decoder.from_manifest(m, precision="int8").entry["path"]
        p50s = _python_p50s(m.folder, default, invokes, rounds)
        rec["python_default_int8"] = {"artifact": default, "p50_us": min(p50s), "p50_us_rounds": p50s}
    return WebBenchResult(_platform(), version, records, shots)


def agreement_record(manifest, entry: dict, z: np.ndarray, in_page: np.ndarray) -> dict:
    """The page's pixels for latents ``z`` against the Python runtime on the same file and against the
    reference the decoder must match (``compare.page_agreement``: TFLite Micro for vae-edge-wasm's int8 module,
    the Python runtime's logits or pixels for the rest), as the bench's record of one decoder."""
    in_page = np.asarray(in_page, np.float32).reshape(len(z), -1)
    python = Decoder(manifest, entry).decode(z).reshape(len(z), -1)
    agreement = page_agreement(manifest, entry, z, in_page, python)
    vs_reference = asdict(agreement)
    if entry["precision"] == "int8" and entry["io"] == "int8":
        # TFLM's fixed-point requantization against XNNPACK's float one in the Python runtime: a few steps.
        scale = float(entry["outputs"][0]["scale"])
        vs_reference["max_logit_steps_vs_python"] = max_logit_steps(in_page, python, scale)
    return {
        "max_abs_vs_python": float(np.abs(in_page - python).max()),
        "identical_to_python": bool(np.array_equal(in_page, python)),
        "vs_reference": vs_reference,
    }


def _platform() -> dict:
    info = platform_info()
    # runtime.bench.cpu_model takes the first of "model name"/"model" lines, which on x86 is the numeric
    # "model" field; the report wants the name.
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        if names:
            info["cpu"] = names[0]
    except OSError:
        pass
    return info


def _first_decode_ms(browser, url: str) -> float:
    page = open_site_page(browser, url).page
    ms = page.evaluate("vaeEdge.state().firstDecodeMs")
    page.context.close()
    return ms


def _screenshot(browser, url: str, model: str, viewport: dict, path: Path) -> str:
    """The page after one prior sample (seed 0), with the manifold drawn."""
    page = open_site_page(browser, f"{url}?model={model}", viewport=viewport).page
    page.click("#sample")
    page.evaluate("vaeEdge.idle()")
    write_bytes_atomic(path, page.screenshot(full_page=True))
    page.context.close()
    return str(path)


def _agreement(d: dict) -> str:
    """One decoder's agreement with its reference, for the report's table."""
    v = d["vs_reference"]
    reference = "TFLM" if v["reference"].startswith("TFLite Micro") else "Python"
    if v["logits_identical"] is None:  # float32
        verdict = "within" if v["passed"] else "**beyond**"
        return f"{verdict} {v['tolerance']:.0e} of {reference} ({v['max_abs']:.2g})"
    verdict = f"identical to {reference}" if v["logits_identical"] else f"**differ from {reference}**"
    if v["max_abs"] > v["tolerance"]:
        verdict += f", **pixels {v['max_abs']:.2g} apart** (bound {v['tolerance']:.0e})"
    if "max_logit_steps_vs_python" in v:  # vae-edge-wasm: TFLite Micro's arithmetic, not XNNPACK's
        verdict += f"; ≤ {v['max_logit_steps_vs_python']} steps from Python's XNNPACK"
    return f"{verdict} ({v['recovered']:.0%} of pixels recoverable)"


def _rounds(result: WebBenchResult) -> int:
    return result.records[0]["int8"]["rounds"] if result.records else ROUNDS


def _loads(result: WebBenchResult) -> int:
    return len(result.records[0]["first_decode_ms_all"]) if result.records else FIRST_DECODE_LOADS


def write_reports(result: WebBenchResult, reports) -> list[Path]:
    reports = Path(reports)
    json_path = write_json_atomic(
        reports / "web_bench.json",
        {
            "platform": result.platform,
            "chromium": result.chromium,
            "records": result.records,
            "screenshots": result.screenshots,
        },
    )
    lines = [
        "# Latent explorer in headless Chromium",
        "",
        f"Chromium {result.chromium}; {result.platform['cpu']}, {result.platform['cores']} cores; "
        f"batch 1, 1 thread (WASM and Python). p50 over timings of {CHUNK} consecutive decodes each (Chromium's "
        "clock is coarse) through the page's decode path, the lowest "
        f"of {_rounds(result)} rounds' p50 (each round's in the JSON); Python: runtime.bench on the same file, "
        "lowest of as many rounds. First decode: navigation start to the first digit on "
        "screen, fresh browser context (median of "
        f"{_loads(result)} loads). int8 logits and float32 pixels against their reference (TFLM for an int8-I/O "
        "graph, else the Python runtime on the same file): "
        f"every recoverable int8 logit identical and pixels within {INT8_MAX_ABS:.0e}, float32 pixels within "
        f"{FLOAT32_MAX_ABS:.0e}.",
        "",
        "| runtime | model | int8 file | int8 p50 | Python p50 (same file) | ratio | float32 p50 | Python float32 | "
        "int8 max abs vs Python | int8 logits vs reference | float32 vs reference | first decode | site (gzip) | "
        "console errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result.records:
        i, f = r["int8"], r["float32"]
        lines.append(
            f"| {r['runtime']} {r['runtime_version']} | {r['model']} | {i['artifact']} | {i['p50_us']:.0f} µs | "
            f"{i['python_p50_us']:.0f} µs | {i['p50_us'] / i['python_p50_us']:.1f}× | {f['p50_us']:.0f} µs | "
            f"{f['python_p50_us']:.0f} µs | {i['max_abs_vs_python']:.2g} | {_agreement(i)} | {_agreement(f)} | "
            f"{r['first_decode_ms']:.0f} ms | {r['site_bytes'] / 1e6:.2f} MB ({r['site_gzip_bytes'] / 1e6:.2f} MB) | "
            f"{r['console_errors']} |"
        )
    lines += ["", "Python runtime's default int8 decoder (TFLite, int8 I/O, XNNPACK), for reference:", ""]
    seen = set()
    for r in result.records:
        d = r["python_default_int8"]
        if r["model"] not in seen:
            seen.add(r["model"])
            lines.append(f"- {r['model']}: {d['artifact']} p50 {d['p50_us']:.0f} µs")
    if result.screenshots:
        lines += ["", "Screenshots: " + ", ".join(Path(s).name for s in result.screenshots)]
    md_path = write_text_atomic(reports / "web_bench.md", "\n".join(lines) + "\n")
    return [json_path, md_path, *map(Path, result.screenshots)]
