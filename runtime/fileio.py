"""Atomic file writes and hashing, used by every stage so a crash never leaves half a file behind.

A file is written to a temporary sibling and renamed over the target only once it is complete and
flushed, so readers see either the old good file or the new good file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import VaeEdgeError


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove we can write there; raise a one-line error otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise VaeEdgeError(
            f"output directory {path} is not writable ({exc.strerror or exc}); "
            "choose another with --out/--artifacts or fix its permissions"
        ) from None
    return path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    The suffix lets writers that insist on an extension (keras wants ``.keras``) use the temp path.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix or ".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(target, text.encode("utf-8"))


def write_json_atomic(target: str | os.PathLike, obj) -> Path:
    return write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    # numpy scalars and arrays show up in metrics; write them as plain JSON numbers and lists.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


STAGING_MARK = "-staging-"


def remove_stale_staging(target: str | os.PathLike) -> list[Path]:
    """Delete staging folders that a killed run left beside ``target`` (they never became ``target``)."""
    target = Path(target)
    stale = sorted(target.parent.glob(f".{target.name}{STAGING_MARK}*"))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(staging: Path, target: Path) -> None:
    """Make the complete folder ``staging`` become ``target``; afterwards ``staging`` holds the old one.

    A reader of ``target`` sees the whole old set or the whole new set, never a mix: on Linux the two folders
    are exchanged in one step; elsewhere the old folder is renamed away and the new one renamed in (a reader
    in that instant finds no folder, never a mixed one).
    """
    if not target.exists():
        os.rename(staging, target)
        staging.mkdir()  # the caller removes it
        return
    if _exchange(staging, target):
        return
    parked = staging.with_name(staging.name + "-old")
    os.rename(target, parked)
    os.rename(staging, target)
    os.rename(parked, staging)


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Write a whole folder as one set: yield an empty staging folder beside ``target``; when the block
    succeeds its contents replace ``target`` in one step (:func:`swap_in`); when it fails, or the process is
    killed, ``target`` is untouched and the next run removes the leftover staging folder.

        with staged_folder("artifacts/vae2d/export") as staging:
            (staging / "manifest.json").write_text(...)
    """
    target = Path(target)
    remove_stale_staging(target)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}{STAGING_MARK}"))
    try:
        yield staging
        for path in staging.iterdir():
            if path.is_file():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_npy_stream(target: str | os.PathLike, shape: tuple[int, ...], dtype, chunks) -> Path:
    """Write an .npy of ``shape`` from an iterable of row blocks as they arrive (atomically, bounded memory).

    The header is written first from the announced shape; the rows must add up to ``shape[0]`` or nothing is
    published. Plain file writes, not a memory map: mapped pages would count in the writer's RSS.
    """
    import numpy as np

    dtype = np.dtype(dtype)
    rows = 0
    with atomic_path(target, suffix=".npy") as tmp, open(tmp, "wb") as fh:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
        np.lib.format.write_array_header_2_0(fh, header)
        for chunk in chunks:
            block = np.ascontiguousarray(chunk, dtype=dtype)
            if block.shape[1:] != tuple(shape[1:]):
                raise VaeEdgeError(
                    f"{target}: a block of shape {block.shape} does not fit rows of {shape[1:]}"
                )
            rows += len(block)
            if rows > shape[0]:
                raise VaeEdgeError(f"{target}: more than the announced {shape[0]} rows")
            fh.write(block.tobytes())
        if rows != shape[0]:
            raise VaeEdgeError(f"{target}: {rows} rows written, {shape[0]} announced")
    return Path(target)
