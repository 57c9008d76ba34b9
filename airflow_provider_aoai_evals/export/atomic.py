"""Write a file so that its final path holds either nothing (or its previous version) or the whole file.

Why not just ``with path.open("wb")``: fsspec's buffered files upload what they hold when closed, and
``with`` closes them on errors too, so a failed export would leave a truncated object at the final path
that a downstream task could read as complete. Instead the bytes go to a hidden temporary name beside the
final path (same directory, bucket or container, so the move stays within one filesystem), and only a
complete file is moved into place.

What "atomic" means per store:

- **Local and POSIX filesystems** (``file://``, plain paths): the move is ``rename(2)``, atomic on one
  filesystem: a reader sees the old file or the new one, never a part. The data is fsync'ed before the
  rename, so a crash after the rename does not leave an empty file.
- **Object stores** (``s3://``, ``gs://``, ``abfs://``/``wasb://`` blob containers): there is no rename;
  the move is a server-side copy followed by a delete of the temporary object. The copy creates the final
  object in one step (readers never see a partial object), but the temporary object is visible under its
  hidden name while the export runs, and a process killed with SIGKILL between copy and delete (or during
  the upload) leaves it behind; nothing partial is ever at the final path.

On any error, including ``KeyboardInterrupt`` and Airflow's task termination, the temporary file is
closed and deleted before the error propagates.

A final path that cannot hold a file (a file where a folder must be, an existing folder, a read-only
folder) raises ``UnwritableTarget`` from ``prepare_target``, which callers run before doing any work for
the file, and from ``atomic_write`` before anything is written.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import uuid
from collections.abc import Iterator
from typing import IO, Any, Protocol

log = logging.getLogger(__name__)

#: Temporary files are named ``.<final name>.<random>.tmp`` beside the final path.
TEMP_SUFFIX = ".tmp"
#: Most bytes of the final name kept in a temporary name: common filesystems allow 255 bytes per name, and
#: the dot, the random part and the suffix take 18 of them.
TEMP_NAME_MAX = 200


class UnwritableTarget(OSError):
    """The final path cannot receive a file; ``problem`` says why, in words a user can act on."""

    def __init__(self, final: str, problem: str) -> None:
        super().__init__(f"{final}: {problem}")
        self.final = final
        self.problem = problem


class FileSystemLike(Protocol):
    """The part of ``fsspec.AbstractFileSystem`` used here (fsspec ships no type information)."""

    def open(self, path: str, mode: str = ...) -> Any: ...

    def mv(self, path1: str, path2: str) -> Any: ...

    def rm(self, path: str) -> Any: ...

    def makedirs(self, path: str, exist_ok: bool = ...) -> Any: ...

    def isdir(self, path: str) -> bool: ...

    def isfile(self, path: str) -> bool: ...


def temp_path_for(final: str) -> str:
    """A unique hidden name in the same directory / container as ``final`` (an fsspec path, no scheme)."""
    head, sep, name = final.rpartition("/")
    while len(name.encode()) > TEMP_NAME_MAX:  # a valid final name must not make an invalid temporary one
        name = name[:-1]
    return f"{head}{sep}.{name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}"


def _is_local(fs: Any) -> bool:
    protocol = getattr(fs, "protocol", None)
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol or ())
    return bool({"file", "local"} & set(protocols))


def _file_in_the_way(fs: FileSystemLike, folder: str) -> str | None:
    """The nearest ancestor of ``folder`` (or itself) that exists as a file, if any; stops at the first
    existing folder, so a folder that exists costs one check."""
    while folder and not fs.isdir(folder):
        if fs.isfile(folder):
            return folder
        folder = folder.rpartition("/")[0]
    return None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def prepare_target(fs: FileSystemLike, final: str, *, make_parents: bool = True) -> None:
    """Create the folders of ``final`` and check a file can go there, so a doomed write fails before any
    work is done for it (and before anything is written). Raises ``UnwritableTarget``.

    On a local filesystem, write permission on the folder is checked too (a read-only folder or mount); on
    object stores only a write can tell, and ``atomic_write`` reports that failure the same way.
    """
    parent = final.rpartition("/")[0]
    local = _is_local(fs)
    # Object stores allow a key and a "folder" of the same name, so only a local file is in the way.
    blocker = _file_in_the_way(fs, parent) if local and parent else None
    if blocker is not None:
        raise UnwritableTarget(final, f"{blocker} is a file, not a folder")
    if make_parents and parent:
        try:
            fs.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise UnwritableTarget(final, f"cannot create its folder {parent}: {_reason(exc)}") from exc
    if fs.isdir(final):
        raise UnwritableTarget(final, "it is an existing folder; the destination must name a file")
    if local and parent and not os.access(parent, os.W_OK | os.X_OK):
        raise UnwritableTarget(final, f"its folder {parent} is not writable")


def _fsync(handle: Any) -> None:
    """Flush a local file to disk; object-store files have no descriptor and are skipped."""
    try:
        handle.flush()
        os.fsync(handle.fileno())
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        return


def _discard(fs: FileSystemLike, handle: Any, tmp: str) -> None:
    """Close the temporary file (which may upload it: fsspec commits on close) and delete it."""
    try:
        handle.close()
    except Exception as exc:  # noqa: BLE001 - already failing; the original error matters more
        log.debug("Closing temporary file %s after an error failed: %s", tmp, exc)
    try:
        fs.rm(tmp)
    except FileNotFoundError:
        return
    except Exception as exc:  # noqa: BLE001 - already failing; say what is left behind
        log.warning("Could not delete temporary file %s after a failed export: %s", tmp, exc)


@contextlib.contextmanager
def atomic_write(fs: FileSystemLike, final: str, *, make_parents: bool = True) -> Iterator[IO[bytes]]:
    """Yield a binary file; on normal exit move it to ``final``, on any error delete it.

    ``fs`` is an fsspec filesystem and ``final`` a path on it without scheme (``ObjectStoragePath.fs`` and
    ``.path``). An existing file at ``final`` is replaced only when the new one is complete.
    """
    tmp = temp_path_for(final)
    prepare_target(fs, final, make_parents=make_parents)
    try:
        handle = fs.open(tmp, "wb")
    except OSError as exc:
        raise UnwritableTarget(final, f"cannot write in its folder: {_reason(exc)}") from exc
    try:
        yield handle
        _fsync(handle)
        handle.close()
        fs.mv(tmp, final)
    except BaseException:
        _discard(fs, handle, tmp)
        raise
