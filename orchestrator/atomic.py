"""Atomic file replacement with one durability policy, and no symbolic link followed, for
every file kdsweep writes.

A reader of a path written here sees the old content or the new one, never a mix: the data
goes to a temporary name in the same directory (starting with ``"."``, so dataset readers
skip it), is fsynced, renamed over the target, and the directory is fsynced so the rename
survives a power loss. The store's fragments, checkpoints and records all go through
:func:`write_atomic` or, for a name chosen by the caller, :func:`fsync_dir`.

Run directories live on shared file systems where others may write, so a symbolic link
planted where kdsweep writes must not make it write elsewhere: temporary files are created
exclusively (``O_EXCL``, which never follows a link), a target that is a link is refused
rather than replaced, lock files are opened with ``O_NOFOLLOW`` (:func:`open_lock`) and
directories kdsweep creates are checked to be directories, not links (:func:`real_dir`).
Each refusal is a :class:`PlantedLinkError` naming the link.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

# Whether writes are made durable (fsync). Only ``kdsweep simulate`` turns it off: a simulated
# run can be recomputed, and fsyncs would be most of its cost per report.
_durable = True


def set_durable(durable: bool) -> None:
    """Turn fsync on (the default) or off for this process's writes."""
    global _durable
    _durable = durable


#: errno values with which some file systems (NFS, FUSE, SMB) refuse to fsync a directory.
#: There a rename is as durable as the file system makes it; refusing to write would be worse.
_DIR_FSYNC_UNSUPPORTED = (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EPERM)


class PlantedLinkError(OSError):
    """A symbolic link stands where kdsweep would write a file or a directory of its own.
    ``filename`` is the link; nothing was written through it."""


def planted_link(path: Path) -> PlantedLinkError:
    """The error for the symbolic link at ``path``, naming where it points (its
    ``strerror`` reads after the path: "PATH: is a symbolic link (to ...) ...")."""
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return PlantedLinkError(
        errno.ELOOP, f"is a symbolic link (to {target}); kdsweep never follows a link in a run directory: remove it", str(path)
    )


def real_dir(path: Path) -> None:
    """Create directory ``path`` (its parent must exist) unless it exists; PlantedLinkError
    when a symbolic link stands in its place, NotADirectoryError when a file does."""
    try:
        path.mkdir()
    except FileExistsError:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            raise planted_link(path) from None
        if not stat.S_ISDIR(mode):
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a directory", str(path)) from None


def open_lock(path: Path) -> int:
    """A read-write descriptor of lock file ``path`` (created if missing) for ``flock``,
    never through a symbolic link (PlantedLinkError)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise planted_link(path) from None
        raise


def read_bytes(path: Path) -> bytes:
    """The bytes of run file ``path``, never read through a symbolic link (PlantedLinkError):
    a link planted in a shared run directory could feed a command any file its user can
    read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise planted_link(path) from None
        raise
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def fsync_dir(path: Path) -> None:
    """Make renames, links and deletions in directory ``path`` durable where the file system
    supports a directory fsync (see ``_DIR_FSYNC_UNSUPPORTED``)."""
    if not _durable:
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise _naming(exc, path) from exc
    finally:
        os.close(fd)


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` naming ``path`` when it names no file: a write or an fsync that fails (a full
    disk) carries no file name, and the message must say which file system is full."""
    if exc.filename is not None:
        return exc
    return type(exc)(exc.errno, exc.strerror, str(path))


def temp_name(path: Path) -> Path:
    """A fresh hidden temporary name beside ``path``."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def write_temp(tmp: Path, data: bytes | Callable[[IO[bytes]], None]) -> None:
    """Create ``tmp`` (which must not exist) holding ``data`` (bytes, or a function that
    writes into the open file), fsynced. On any failure (a full disk among them) ``tmp`` is
    removed and the error propagates."""
    try:
        with open(tmp, "xb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            fh.flush()
            if _durable:
                os.fsync(fh.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _naming(exc, tmp) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes | Callable[[IO[bytes]], None]) -> None:
    """Replace ``path`` with ``data`` atomically and durably (module docstring); creates the
    parent directory if needed. PlantedLinkError, before anything is written, when ``path``
    is a symbolic link."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        raise planted_link(path)
    tmp = temp_name(path)
    write_temp(tmp, data)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def unusable_output(path: Path, *, suffix: str | None = None, new: bool = False) -> str | None:
    """Why ``path`` cannot be the file a command writes (what it must be instead), or None.

    The one check of every output path a user names (``report --html/--plot``, ``export
    --optuna/--tendencies``), made before any work so that a mistyped path fails at once: a
    file name ending in ``suffix`` (when given), not a directory, new when ``new`` (the
    caller replaces nothing), in an existing directory this user can write (a mistyped
    directory is not created).
    """
    if suffix is not None and path.suffix.lower() != suffix:
        return f"a file name ending in {suffix}"
    if path.is_dir():
        return "a file, not a directory"
    if new and (path.exists() or path.is_symlink()):
        return "a new file (--force replaces an existing one)"
    parent = path.parent
    if not parent.is_dir():
        blocked = next((p for p in [parent, *parent.parents] if p.exists()), None)
        where = f"{blocked} is a file" if blocked is not None and not blocked.is_dir() else f"{parent} does not exist"
        return f"a file in an existing directory ({where})"
    if not os.access(parent, os.W_OK):
        return f"a file in a directory this user can write ({parent} is not writable)"
    return None
