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


class FileSystemLike(Protocol):
    """The part of ``fsspec.AbstractFileSystem`` used here (fsspec ships no type information)."""

    def open(self, path: str, mode: str = ...) -> Any: ...

    def mv(self, path1: str, path2: str) -> Any: ...

    def rm(self, path: str) -> Any: ...

    def makedirs(self, path: str, exist_ok: bool = ...) -> Any: ...


def temp_path_for(final: str) -> str:
    """A unique hidden name in the same directory / container as ``final`` (an fsspec path, no scheme)."""
    head, sep, name = final.rpartition("/")
    return f"{head}{sep}.{name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}"


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
    parent = final.rpartition("/")[0]
    if make_parents and parent:
        fs.makedirs(parent, exist_ok=True)
    handle = fs.open(tmp, "wb")
    try:
        yield handle
        _fsync(handle)
        handle.close()
        fs.mv(tmp, final)
    except BaseException:
        _discard(fs, handle, tmp)
        raise
