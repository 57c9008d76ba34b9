"""A file destination given to an operator: checked, turned into an ``ObjectStoragePath``, made ready.

The export and the comparison operator both write one file to a path the user names (an
``ObjectStoragePath``, a URL or an absolute path), so what they accept, and how they refuse the rest,
is decided here once.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.export.atomic import UnwritableTarget, prepare_target


def check_destination_type(destination: Any, none_means: str) -> None:
    """Refuse, at DAG parse time, a destination no template can turn into a path (a number, a dict)."""
    if destination is not None and not isinstance(destination, (str, os.PathLike, ObjectStoragePath)):
        raise EvalsConfigError(
            "destination",
            f"must be an ObjectStoragePath, a URL or absolute path string, or None ({none_means}); "
            f"got {type(destination).__name__}",
        )


def destination_path(
    destination: Any, storage_conn_id: str | None, *, none_means: str
) -> ObjectStoragePath | None:
    """The rendered ``destination`` as a path naming a file, or None when there is none.

    A relative path is refused: a worker's working directory is not stable, so the file would land
    somewhere nobody looks.
    """
    check_destination_type(destination, none_means)
    if destination is None:
        return None
    if isinstance(destination, ObjectStoragePath):
        path = destination
    else:
        text = os.fspath(destination) if isinstance(destination, os.PathLike) else destination
        if not isinstance(text, str) or not text.strip():
            raise EvalsConfigError("destination", f"must not be empty (use None for {none_means})")
        text = text.strip()
        if "://" not in text and not os.path.isabs(text):
            raise EvalsConfigError(
                "destination",
                f"{text!r} is a relative path; use an absolute path or a URL such as "
                "'file:///data/x.jsonl' or 's3://bucket/x.jsonl' (a worker's working directory is not stable)",
            )
        if text.endswith("/"):
            raise EvalsConfigError("destination", f"{text!r} names a directory; it must name a file")
        try:
            path = ObjectStoragePath(text, conn_id=storage_conn_id)
        except (ValueError, TypeError) as exc:
            raise EvalsConfigError("destination", f"{text!r} is not a usable path: {exc}") from None
    if not path.name:
        raise EvalsConfigError("destination", f"{path} names no file")
    return path


def unwritable(path: ObjectStoragePath, exc: UnwritableTarget) -> EvalsConfigError:
    return EvalsConfigError("destination", f"cannot write {path}: {exc.problem}")


def prepare_destination(path: ObjectStoragePath) -> None:
    """Create the destination's folders and check it can take a file before any request, so a doomed
    task neither fetches the runs nor leaves a part behind."""
    try:
        prepare_target(path.fs, path.path)
    except UnwritableTarget as exc:
        raise unwritable(path, exc) from None
