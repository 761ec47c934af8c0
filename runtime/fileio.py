"""Atomic file writes and hashing, used by every stage so a crash never leaves half a file behind.

A file is written to a temporary sibling and renamed over the target only once it is complete and
flushed, so readers see either the old good file or the new good file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import stat
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


# Atomic writes stage into ".<target>.<host>-<pid>.<8 random chars><suffix>" beside the target: the host and pid
# name the process that owns it, so a later run can tell a temporary whose writer was killed (kill -9, power
# loss) from one a live run is still writing, and removes only the former.
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:16] or "host"
_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def replaceable_target(target: str | os.PathLike) -> Path:
    """The path an atomic write of ``target`` replaces; raise a one-line error if that is not a regular file.

    A new path is fine. A device node, pipe, socket or folder is refused: renaming a file over
    ``/dev/full`` (as root) or over a FIFO a reader waits on destroys it. A symlink is followed, as the
    shell's ``>`` does: the file it points to is replaced (atomically, beside itself) and the link is kept,
    so ``--out latest.png`` pointing into another folder updates that file. A link to a non-regular file is
    refused like the file itself.
    """
    target = Path(target)
    real = Path(os.path.realpath(target)) if target.is_symlink() else target
    try:
        mode = os.stat(real).st_mode
    except OSError:  # a new path; a missing folder or a file in the way fails later with its own message
        return real
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        via = f" (the link {target} points to {real})" if real != target else ""
        raise VaeEdgeError(
            f"{real} is {kind}{via}, not a regular file; refusing to write over it: give the path of a file"
        )
    return real


def _temporary_pattern(name: str) -> re.Pattern:
    return re.compile(rf"\.{re.escape(name)}\.([A-Za-z0-9]+)-([0-9]+)\.[a-z0-9_]{{8}}\.[A-Za-z0-9]+")


def _process_gone(pid: int) -> bool:
    """True only when no process ``pid`` exists on this machine (unknown counts as alive)."""
    if os.name != "posix" or pid == os.getpid():
        return False  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # EPERM: it exists, owned by someone else
        return False
    return False


def is_stale_temporary(path: str | os.PathLike, name: str | None = None) -> bool:
    """Whether ``path`` is an atomic write's temporary (of the target ``name``, when given) whose writing
    process is gone: written on this host by a pid that no longer exists."""
    path = Path(path)
    pattern = _temporary_pattern(name) if name is not None else _ANY_TEMPORARY
    match = pattern.fullmatch(path.name)
    return match is not None and match.group(1) == _HOST and _process_gone(int(match.group(2)))


_ANY_TEMPORARY = re.compile(r"\.[^/]+\.([A-Za-z0-9]+)-([0-9]+)\.[a-z0-9_]{8}\.[A-Za-z0-9]+")


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is an atomic write's temporary that records its owner (host and pid)."""
    return _ANY_TEMPORARY.fullmatch(name) is not None


def remove_stale_temporaries(target: str | os.PathLike) -> list[Path]:
    """Delete the temporaries of ``target`` that a killed write left beside it (only those whose process is
    gone: a concurrent writer's temporary is kept). A ``kill -9`` during ``sample --out x.npy`` can leave
    gigabytes behind; the next write of ``x.npy`` removes them."""
    target = Path(target)
    removed = []
    try:
        candidates = list(target.parent.glob(f".{glob.escape(target.name)}.*"))
    except OSError:
        return removed
    for path in candidates:
        if is_stale_temporary(path, target.name) and path.is_file() and not path.is_symlink():
            with contextlib.suppress(FileNotFoundError):  # another run removed it first
                path.unlink()
                removed.append(path)
    return removed


def _naming(exc: OSError, target: Path, tmp: Path) -> OSError:
    """``exc`` with ``target`` as its path when it names none (a failed write or fsync: ENOSPC, EFBIG, EIO
    carry no file name) or names the hidden temporary, so the one-line error says which output failed."""
    if exc.errno is None or exc.filename not in (None, str(tmp)):
        return exc
    return OSError(exc.errno, exc.strerror or str(exc), str(target))


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    The suffix lets writers that insist on an extension (keras wants ``.keras``) use the temp path.
    ``target`` must be a regular file or a new path (:func:`replaceable_target`); temporaries of it that a
    killed run left behind are removed first (:func:`remove_stale_temporaries`). An OSError of the block that
    names no file (a full disk, a file size limit) is raised naming ``target``.
    """
    target = replaceable_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.{_HOST}-{os.getpid()}.", suffix=suffix or ".tmp"
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
        except OSError as exc:
            raise _naming(exc, target, tmp_path) from None
        replaceable_target(target)  # again: something other than a file may have appeared meanwhile
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
# A staging folder is ".<target>-staging-<host>-<pid>.<8 random chars>" (swap_in may park the old folder at
# that name + "-old"): like an atomic write's temporary it names its owner, so a run removes only the staging
# folders of runs that are gone, never the one a concurrent run is still filling. Folders of the older form
# (".<target>-staging-<8 random chars>", no owner) are removed as before.
_ACTIVE_STAGING: set[str] = set()  # names of the staging folders this process's staged_folder blocks fill now
_OWNED_STAGING = re.compile(r"([A-Za-z0-9]+)-([0-9]+)\.[A-Za-z0-9_]{8}(-old)?")


def is_stale_staging(path: str | os.PathLike, target: str | os.PathLike) -> bool:
    """Whether ``path`` is a staging folder of ``target`` left by a run that is gone (killed, crashed): one
    written on this host by a pid that no longer exists, or one of the older kind that names no owner."""
    prefix = f".{Path(target).name}{STAGING_MARK}"
    name = Path(path).name
    if not name.startswith(prefix):
        return False
    owner = _OWNED_STAGING.fullmatch(name[len(prefix) :])
    if owner is None:
        return True  # no owner recorded: written before staging folders named theirs
    if owner.group(1) != _HOST:
        return False
    if (
        int(owner.group(2)) == os.getpid()
    ):  # ours: stale unless a staged_folder of this process still fills it
        return name.removesuffix("-old") not in _ACTIVE_STAGING
    return _process_gone(int(owner.group(2)))


def remove_stale_staging(target: str | os.PathLike) -> list[Path]:
    """Delete the staging folders that killed runs left beside ``target`` (they never became ``target``).

    A folder another live run is still filling is kept (two exports into one folder at once each finish, the
    later one's set replacing the earlier's); so is one from another host sharing the folder, whose process
    this host cannot see."""
    target = Path(target)
    try:
        candidates = sorted(target.parent.glob(f".{glob.escape(target.name)}{STAGING_MARK}*"))
    except OSError:
        return []
    stale = [p for p in candidates if is_stale_staging(p, target) and not p.is_symlink()]
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
    killed, ``target`` is untouched and the next run removes the leftover staging folder. The staging folder
    names this process (:func:`is_stale_staging`), so a concurrent run into the same ``target`` never removes it.

        with staged_folder("artifacts/vae2d/export") as staging:
            (staging / "manifest.json").write_text(...)
    """
    target = Path(target)
    remove_stale_staging(target)
    staging = Path(
        tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}{STAGING_MARK}{_HOST}-{os.getpid()}.")
    )
    _ACTIVE_STAGING.add(staging.name)
    try:
        yield staging
        for path in staging.iterdir():
            if path.is_file():
                with open(path, "rb") as fh:
                    os.fsync(fh.fileno())
        swap_in(staging, target)
    finally:
        _ACTIVE_STAGING.discard(staging.name)
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
