"""The C generator's front door: :func:`generate` resolves an export folder or a ``.tflite`` file, lowers its
graph, emits the C and replaces ``<name>_decoder.{h,c}`` together (:func:`write_files_together`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import VaeEdgeError

from ..graph import load_graph
from .emit import c_identifier, emit_c
from .lowering import lower
from .plan import GRAPHS, DecoderPlan
from .scheduling import Schedule, schedule


@dataclass(frozen=True)
class GeneratedDecoder:
    header: Path
    source: Path
    plan: DecoderPlan
    schedule: Schedule


def resolve_source(source: str | Path, graph: str) -> tuple[Path, str, np.ndarray | None, str]:
    """(tflite path, model name, prior Cholesky or None, graph kind) for an export folder or a .tflite file."""
    from runtime.manifest import MANIFEST_NAME, load_manifest

    src = Path(source)
    if src.is_dir():
        manifest = load_manifest(src)
        entry = manifest.select(
            role="decoder", format="tflite", precision="int8", io="int8", batch=1, graph=graph
        )
        path = manifest.verify(entry)
        return path, manifest.model, np.asarray(manifest.prior.cholesky), graph
    if not src.is_file():
        raise VaeEdgeError(
            f"{src} not found; give an export folder (artifacts/<model>/export) or a .tflite decoder"
        )
    chol = None
    name = src.stem
    if (src.parent / MANIFEST_NAME).is_file():
        manifest = load_manifest(src.parent)
        if manifest.kind == "vae":
            chol, name = np.asarray(manifest.prior.cholesky), manifest.model
    kind = next((g for g in GRAPHS if f"_{g}_" in src.name), graph)
    return src, name, chol, kind


def exported_sources(artifacts: Path, model: str, graph: str) -> list[tuple[Path, tuple[str, ...]]]:
    """(export folder, its int8-I/O batch-1 graphs to build) of ``model``, or of every exported VAE for ``all``:
    the built-in models first, then the others by name. One line naming the fix when there is nothing."""
    from runtime.manifest import MANIFEST_NAME, find_manifests, load_manifest
    from runtime.vocab import ALL, VAE_MODELS

    if model == ALL:
        found = {n: m for n, m in find_manifests(artifacts).items() if m.kind == "vae"}
        order = [n for n in VAE_MODELS if n in found] + sorted(set(found) - set(VAE_MODELS))
        manifests = [found[n] for n in order]
        if not manifests:
            raise VaeEdgeError(
                f"no exported VAE under {artifacts}; run make train export (or python -m export --decoder)"
            )
    else:
        folder = artifacts / model / "export"
        if not (folder / MANIFEST_NAME).is_file():
            raise VaeEdgeError(f"{folder / MANIFEST_NAME} not found; run make train export (or pass --model)")
        manifests = [load_manifest(folder)]
    sources = []
    for m in manifests:
        have = [
            g
            for g in GRAPHS
            if m.find(role="decoder", format="tflite", precision="int8", io="int8", batch=1, graph=g)
        ]
        wanted = tuple(have if graph == ALL else [g for g in have if g == graph])
        if not wanted:
            raise VaeEdgeError(
                f"{m.model}'s export has no int8-I/O batch-1 decoder of graph {graph} (it has: "
                f"{', '.join(have) or 'none'}); pass --graph {have[0] if have else ALL} or re-export"
            )
        sources.append((m.folder, wanted))
    return sources


def generate(
    *, source: str | Path, out: str | Path, graph: str = "subpixel", name: str | None = None
) -> GeneratedDecoder:
    """Lower and emit ``<name>_decoder.{h,c}`` into ``out``; nothing is written if anything fails."""
    from runtime.fileio import ensure_writable_dir

    path, model_name, chol, kind = resolve_source(source, graph)
    data = path.read_bytes()
    g = load_graph(path)
    plan = lower(
        g,
        name=name or model_name,
        graph_kind=kind,
        source=path.name,
        source_sha256=hashlib.sha256(data).hexdigest(),
    )
    note = "" if chol is not None else "identity: no vae-edge manifest beside the model"
    header, source_text = emit_c(plan, prior_cholesky=chol, prior_note=note)
    out_dir = ensure_writable_dir(out)
    m = c_identifier(plan.name)
    h_path, c_path = out_dir / f"{m}_decoder.h", out_dir / f"{m}_decoder.c"
    write_files_together({h_path: header, c_path: source_text})
    return GeneratedDecoder(h_path, c_path, plan, schedule(plan))


def write_files_together(files: dict[Path, str]) -> None:
    """Replace several files of one folder as a set: the old set or the new set, never a mix (a new .h beside
    an old .c no longer compiles).

    How: every file is written and fsynced to a temporary sibling first (a full disk fails here, with nothing
    replaced); each existing target is hard-linked to a backup; then the temporaries are renamed over the
    targets. Should a rename fail, the targets already replaced get their backups back (or are removed when
    there was none). Whatever happens, no temporary or backup is left behind. A process killed between two
    renames can still leave a mix; nothing short of a staged folder for the whole output folder avoids that,
    and the output folder holds other models' files."""
    import os
    import tempfile

    from runtime.fileio import replaceable_target

    for target in files:  # a device, pipe or folder in a target's place is refused before anything is written
        replaceable_target(target)
    temps: dict[Path, Path] = {}
    backups: dict[Path, Path | None] = {}
    done: list[Path] = []
    try:
        for target, text in files.items():
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            temps[target] = Path(tmp)
            with os.fdopen(fd, "wb") as fh:
                fh.write(text.encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
        for target in files:
            backups[target] = None
            if target.is_file():
                backup = temps[target].with_suffix(".old")
                os.link(target, backup)
                backups[target] = backup
        for target in files:
            os.replace(temps[target], target)
            done.append(target)
    except BaseException:
        for target in reversed(done):  # put the old set back
            with _ignore_os_errors():
                if backups.get(target) is not None:
                    os.replace(backups[target], target)
                else:
                    target.unlink()
        raise
    finally:
        for path in [*temps.values(), *(b for b in backups.values() if b is not None)]:
            with _ignore_os_errors():
                path.unlink(missing_ok=True)


def _ignore_os_errors():
    import contextlib

    return contextlib.suppress(OSError)
