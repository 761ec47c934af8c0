"""Build the static site: page sources + the browser runtime's files + each VAE's decoders and manifest.

    from tools.web.build import build_site
    result = build_site(artifacts="artifacts", out="dist/web")

Layout of the output (every file the page loads is listed with its sha256, in ``site.json`` or in the model's
own ``manifest.json``, and the page checks each one before use):

    index.html app.js backends.js images.js integrity.js prior.js style.css site.json
    runtime/<the runtime's JS module and WASM, copied from tools/web/node_modules>
    models/<model>/manifest.json  models/<model>/<the int8 and float32 batch-1 decoders>
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import VaeEdgeError
from runtime.fileio import sha256_file, swap_in
from runtime.manifest import MANIFEST_NAME, Manifest, find_manifests

WEB_DIR = Path(__file__).resolve().parent
SITE_SOURCES = WEB_DIR / "site"
NODE_MODULES = WEB_DIR / "node_modules"
# The page's ES modules besides app.js (each pinned by the import map's integrity entries), then the rest.
PAGE_MODULES = ("backends.js", "images.js", "integrity.js", "prior.js")
PAGE_FILES = ("index.html", "app.js", *PAGE_MODULES, "style.css")


@dataclass(frozen=True)
class BrowserRuntime:
    """A browser runtime from npm: which of its files the page needs and which decoders it runs."""

    name: str  # the page's name for it (backends.js)
    package: (
        str | None
    )  # npm package; None: the decoders are compiled to WebAssembly here (tools/web/wasm.py)
    files: tuple[tuple[str, str], ...]  # (path under node_modules/<package>/, name under runtime/)
    format: str  # manifest "format" of the decoders it runs ("wasm": compiled from the export's .tflite)


RUNTIMES = {
    # The export's int8 decoder as firmware_sim's generated C (bit-exact with TFLite Micro) and its float32
    # decoder as emitted C, each compiled to a small WebAssembly module per model; no runtime to download.
    "vae-edge-wasm": BrowserRuntime("vae-edge-wasm", None, (), "wasm"),
    "onnxruntime-web": BrowserRuntime(
        "onnxruntime-web",
        "onnxruntime-web",
        (
            ("dist/ort.wasm.min.mjs", "ort.wasm.min.mjs"),
            ("dist/ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.mjs"),
            ("dist/ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.wasm"),
        ),
        "onnx",
    ),
    # LiteRT.js: only its relaxed-SIMD build (Chromium >= 114); the page imports "@litertjs/wasm-utils"
    # through an import map written into index.html.
    "litert": BrowserRuntime(
        "litert",
        "@litertjs/core",
        (
            ("dist/index.js", "litert.js"),
            ("wasm/litert_wasm_internal.js", "litert_wasm_internal.js"),
            ("wasm/litert_wasm_internal.wasm", "litert_wasm_internal.wasm"),
            ("../wasm-utils/dist/index.js", "litert-wasm-utils.js"),
        ),
        "tflite",
    ),
}
DEFAULT_RUNTIME = "vae-edge-wasm"


HEAD_MARK = "<!-- build: head"
LOAD_ERROR = (
    "A script of this page failed to load or failed its sha256 integrity check, so nothing was run; "
    "rebuild the site (make web) or copy it again."
)


def _sri(path: Path) -> str:
    """Subresource-integrity value (sha256, base64) of a file."""
    return "sha256-" + base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def _head(stage: Path, rt: BrowserRuntime) -> str:
    """The head's build-time part. index.html is the root of trust: it pins site.json (which pins the runtime's
    WASM and each model's manifest, which pins the decoders) and, through the import map, every script module
    (the browser refuses a module whose digest differs). The WASM download starts before the scripts run."""
    modules = [*PAGE_MODULES] + [f"runtime/{n}" for _, n in rt.files if n.endswith((".mjs", ".js"))]
    importmap = {
        # LiteRT.js imports its helper by bare name; an unused entry for onnxruntime-web.
        "imports": {"@litertjs/wasm-utils": "./runtime/litert-wasm-utils.js"},
        "integrity": {f"./{m}": _sri(stage / m) for m in modules},
    }
    lines = [
        f'<meta name="vae-edge-site" content="{sha256_file(stage / "site.json")}">',
        f'<script type="importmap">{json.dumps(importmap)}</script>',
    ]
    lines += [f'<link rel="modulepreload" href="{m}" integrity="{_sri(stage / m)}">' for m in modules]
    lines += [
        f'<link rel="preload" href="runtime/{n}" as="fetch" crossorigin="anonymous">'
        for _, n in rt.files
        if n.endswith(".wasm")
    ]
    show_error = (
        "var e=document.getElementById('error');e.textContent=" + json.dumps(LOAD_ERROR) + ";e.hidden=false"
    )
    lines.append(
        f'<script type="module" src="app.js" integrity="{_sri(stage / "app.js")}" '
        f'onerror="{html.escape(show_error)}"></script>'
    )
    return "\n  ".join(lines)


def _write_index(stage: Path, rt: BrowserRuntime) -> None:
    index = stage / "index.html"
    text = index.read_text()
    start = text.index(HEAD_MARK)
    end = text.index("-->", start) + 3
    index.write_text(text[:start] + _head(stage, rt) + text[end:])


@dataclass(frozen=True)
class ModelSite:
    name: str
    latent_dim: int
    image_shape: tuple[int, int, int]  # (H, W, C) of the decoded images
    int8: str  # file name of the int8 decoder under models/<name>/
    float32: str
    size_bytes: int  # this model's files (decoders + manifest)


@dataclass(frozen=True)
class BuildResult:
    out: Path
    runtime: str
    runtime_version: str
    runtime_bytes: int  # runtime/ files
    page_bytes: int  # index.html, JS, CSS, site.json
    models: tuple[ModelSite, ...]

    def site_bytes(self, model: str) -> int:
        """What a visitor of one model downloads: page + runtime + that model's files."""
        m = next(m for m in self.models if m.name == model)
        return self.page_bytes + self.runtime_bytes + m.size_bytes


def decoder_entries(manifest: Manifest, runtime: BrowserRuntime) -> dict[str, dict]:
    """The batch-1, float-I/O decoders the page runs: int8 on the deployment graph (the sub-pixel rewrite of the
    project's models, a user's decoder's one graph) and float32 on the graph as trained, as
    ``runtime.Decoder.from_manifest`` picks them for ONNX."""
    pick = {
        "int8": dict(precision="int8", graph=manifest.deployment_graph, io="float"),
        "float32": dict(precision="float32", graph="transpose", io="float"),
    }
    return {
        key: manifest.select(role="decoder", format=runtime.format, batch=1, **crit)
        for key, crit in pick.items()
    }


def image_record(manifest: Manifest) -> dict:
    """site.json's description of a model's images, as the page draws them: shape (H, W, C; 1 channel grey, 3
    RGB), the range of the decoders' output values mapped to black..white (null: a linear output, drawn from
    each image's own min..max) and the output activation."""
    shape = list(manifest.image_shape)
    if shape[2] not in (1, 3):
        raise VaeEdgeError(
            f"{manifest.model}: images of {shape[2]} channels; the page draws 1 (grey) or 3 (RGB) channels"
        )
    rng = manifest.image_range
    return {"shape": shape, "range": list(rng) if rng else None, "activation": manifest.output_activation}


def python_entries(manifest: Manifest, runtime: BrowserRuntime) -> dict[str, dict]:
    """The export's decoders that ``runtime.Decoder`` runs beside the page's: the files the page loads, or
    for vae-edge-wasm the ``.tflite`` files its modules were compiled from."""
    if runtime.package is None:
        from .wasm import source_entries

        return source_entries(manifest)
    return decoder_entries(manifest, runtime)


def _clang_version() -> str:
    import subprocess

    from .wasm import toolchain

    first = subprocess.run([toolchain(), "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return "generated C, " + first.replace("Debian ", "")


def _npm_version(package_dir: Path) -> str:
    return json.loads((package_dir / "package.json").read_text())["version"]


def _file_record(path: Path, rel: str) -> dict:
    return {"path": rel, "sha256": sha256_file(path), "size_bytes": path.stat().st_size}


SITE_MARK = "site.json"  # every build writes it; it lists the files the build wrote


def _site_files(site: Path) -> set[str] | None:
    """The paths (relative to the site folder) a previous build wrote, from its site.json; None if unreadable."""
    try:
        record = json.loads(site.read_text())
        files = {*PAGE_FILES, SITE_MARK, *(f["path"] for f in record["runtime"]["files"])}
        for m in record["models"]:
            files.add(m["manifest"]["path"])
            for d in m["decoders"].values():
                files.add(f"models/{m['name']}/{d['path'] if isinstance(d, dict) else d}")
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return None
    return files


def check_out_folder(out: str | os.PathLike, artifacts: str | os.PathLike | None = None) -> None:
    """Refuse an ``--out`` that replacing would destroy something the build did not write.

    ``out`` may be new, empty, or a site a previous build wrote (its site.json lists the files) holding
    nothing else. ``--out .`` or ``--out artifacts`` (trained models, unrelated files) is one line and
    nothing is touched; so is a previous site where someone added a file.
    """
    out = Path(out)
    if artifacts is not None:
        root, arts = out.resolve(), Path(artifacts).resolve()
        if arts == root or root in arts.parents:
            raise VaeEdgeError(
                f"--out {out} holds the --artifacts folder {artifacts}; the build replaces --out whole: "
                "give a separate folder such as dist/web"
            )
    if not out.exists():
        return
    if not out.is_dir():
        raise VaeEdgeError(f"--out {out} is a file, not a folder; give a new folder such as dist/web")
    present = {p.relative_to(out).as_posix(): p for p in out.rglob("*")}
    if not present:
        return
    built = _site_files(out / SITE_MARK)
    if built is None:
        raise VaeEdgeError(
            f"--out {out} is not empty ({_some(sorted(present))}) and holds no readable {SITE_MARK} of an earlier "
            "python -m tools.web build; refusing to replace it, which would delete them: give a new or empty "
            "folder such as dist/web"
        )
    folders = {"runtime", "models"} | {
        parent.as_posix() for rel in built for parent in Path(rel).parents if parent != Path(".")
    }
    foreign = sorted(
        rel
        for rel, p in present.items()
        if not (rel in built and p.is_file() and not p.is_symlink())
        and not (rel in folders and p.is_dir() and not p.is_symlink())
    )
    if foreign:
        raise VaeEdgeError(
            f"--out {out} is an earlier site but also holds what that build did not write ({_some(foreign)}); "
            "refusing to replace it, which would delete them: move them out or give a new or empty folder"
        )


def _some(names: list[str]) -> str:
    return names[0] + (f" and {len(names) - 1} more" if len(names) > 1 else "")


def build_site(
    *,
    artifacts: str | os.PathLike,
    out: str | os.PathLike,
    runtime: str = DEFAULT_RUNTIME,
    node_modules: str | os.PathLike = NODE_MODULES,
    models: tuple[str, ...] | None = None,
) -> BuildResult:
    """Write the site to ``out`` (replaced whole, only once every file is in place).

    ``out`` must be new, empty or a site an earlier build wrote (:func:`check_out_folder`): the build
    never deletes a file it did not write.
    """
    if runtime not in RUNTIMES:
        raise VaeEdgeError(f"unknown browser runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    check_out_folder(out, artifacts)
    rt = RUNTIMES[runtime]
    package_dir = Path(node_modules) / (rt.package or "")
    if rt.package is None:
        from .wasm import build_wasm_decoders, toolchain

        toolchain()  # a missing compiler is one line before anything is written
    elif not (package_dir / "package.json").is_file():
        raise VaeEdgeError(
            f"{package_dir} not found; install the pinned browser runtimes with `npm ci` in tools/web "
            "(make web-deps)"
        )
    manifests = {k: m for k, m in find_manifests(artifacts).items() if m.kind == "vae"}
    if models is not None:
        missing = sorted(set(models) - set(manifests))
        if missing:
            have = ", ".join(sorted(manifests)) or "none"
            raise VaeEdgeError(
                f"no export of {', '.join(missing)} under {artifacts} (exported there: {have}); pick one of "
                "those with --model or run python -m export first"
            )
        manifests = {k: manifests[k] for k in models}
    if not manifests:
        raise VaeEdgeError(
            f"no exported VAE (<model>/export/{MANIFEST_NAME}) under {artifacts}; run make export first"
        )
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name in PAGE_FILES:
            shutil.copy2(SITE_SOURCES / name, stage / name)
        (stage / "runtime").mkdir()
        runtime_files = []
        for rel, name in rt.files:
            src = (package_dir / rel).resolve()
            if not src.is_file():
                raise VaeEdgeError(
                    f"{src} is missing from the installed {rt.package}; run `npm ci` in tools/web"
                )
            shutil.copy2(src, stage / "runtime" / name)
            runtime_files.append(_file_record(stage / "runtime" / name, f"runtime/{name}"))
        model_sites, model_records = [], []
        for name, manifest in manifests.items():
            folder = stage / "models" / name
            folder.mkdir(parents=True)
            if rt.package is None:
                entries = {k: d.record() for k, d in build_wasm_decoders(manifest, folder).items()}
                decoders = entries  # site.json pins these files: the manifest does not list them
            else:
                entries = decoder_entries(manifest, rt)
                for entry in entries.values():  # the verified bytes, not a second read of the file
                    (folder / entry["path"]).write_bytes(manifest.read_verified(entry)[1])
                decoders = {k: e["path"] for k, e in entries.items()}
            shutil.copy2(manifest.folder / MANIFEST_NAME, folder / MANIFEST_NAME)
            size = sum(f.stat().st_size for f in folder.iterdir())
            model_sites.append(
                ModelSite(
                    name,
                    manifest.latent_dim,
                    manifest.image_shape,
                    entries["int8"]["path"],
                    entries["float32"]["path"],
                    size,
                )
            )
            model_records.append(
                {
                    "name": name,
                    "latent_dim": manifest.latent_dim,
                    "image": image_record(manifest),
                    "manifest": _file_record(folder / MANIFEST_NAME, f"models/{name}/{MANIFEST_NAME}"),
                    "decoders": decoders,
                }
            )
        version = _npm_version(package_dir) if rt.package else _clang_version()
        site = {
            "runtime": {"name": rt.name, "package": rt.package, "version": version, "files": runtime_files},
            "models": model_records,
        }
        (stage / SITE_MARK).write_text(json.dumps(site, indent=2) + "\n")
        _write_index(stage, rt)
        page_bytes = sum((stage / n).stat().st_size for n in (*PAGE_FILES, "site.json"))
        runtime_bytes = sum(f["size_bytes"] for f in runtime_files)
        for path in stage.rglob("*"):  # mkdtemp makes the folder 0700; a static server needs to read it
            path.chmod(0o755 if path.is_dir() else 0o644)
        stage.chmod(0o755)
        check_out_folder(out, artifacts)  # again: something may have been added while the site was built
        # One step where the OS allows (the stage then holds the old site, removed below with the stage);
        # no fixed ".old" name beside out that could be someone's folder.
        swap_in(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return BuildResult(out, rt.name, version, runtime_bytes, page_bytes, tuple(model_sites))
