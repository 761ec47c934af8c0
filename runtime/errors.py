"""Error types shared by every vae-edge stage.

Every CLI catches :class:`VaeEdgeError` and prints its message as one line (``error: ...``) and exits 2,
so a message must name the problem *and* the fix.
"""


class VaeEdgeError(Exception):
    """A user-facing error: bad input, missing file, broken artifact. The message names the fix."""


class InvalidInputError(VaeEdgeError, ValueError):
    """Bad values handed to an API (wrong shape, dtype, NaN latents, non-SPD covariance)."""


# errno -> what to do about it; the path and the operating system's words come from the exception itself.
_OS_ERROR_FIXES = {
    "EACCES": "fix its permissions or choose another path",
    "EPERM": "fix its permissions or choose another path",
    "EROFS": "the file system is read-only: choose a writable path",
    "ENOSPC": "the disk is full: free some space or choose another disk",
    "EDQUOT": "the disk quota is exceeded: free some space or choose another disk",
    "EFBIG": "the file is larger than allowed (ulimit -f, or the file system's largest file): raise the limit "
    "or write less (a smaller -n, or another file system)",
    "ENOENT": "check the path (or create its folder)",
    "ENOTDIR": "a part of the path is a file, not a folder: check the path",
    "EISDIR": "it is a folder: give a file path",
    "EEXIST": "it already exists: remove it or choose another path",
    "ENAMETOOLONG": "shorten the path",
    "EMFILE": "too many open files: raise the limit (ulimit -n) or close other programs",
    "EIO": "the device reported an I/O error: check the disk",
}


def os_error_line(exc: OSError) -> str:
    """One line for any OSError: the path(s), the system's reason and what to do (what every CLI prints).

    except OSError as exc:
        print(f"error: {os_error_line(exc)}", file=sys.stderr); return 2
    """
    import errno as _errno

    name = _errno.errorcode.get(exc.errno or -1, "")
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    reason = exc.strerror or str(exc) or type(exc).__name__
    fix = _OS_ERROR_FIXES.get(name, "check the path, its permissions and the free disk space")
    return f"{paths + ': ' if paths else ''}{reason}{f' ({name})' if name else ''}; {fix}"
