"""The compare operator's flips file: each flipped item with both runs' sides, one JSON line per item.

Neither run's items are held: while the runs are paired (pass 1), the candidate's side of each flipped
item goes to a ``FlipSpool`` (a spooled temporary file, indexed by ``datasource_item_id``); pass 2
streams the baseline again and ``write_flips`` joins each flipped baseline item with its spooled side.
What is held in memory grows with the number of flips (an id and a file offset each), not with the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_aoai_evals.api.models import OutputItem
from airflow_provider_aoai_evals.api.pairing import Flip

#: The spool of flipped items stays in memory up to this size, then moves to a temporary file on disk.
SPOOL_MEMORY_BYTES = 4 * 1024 * 1024


class FlipsChanged(AirflowException):
    """A run's items changed between the two passes (a flipped item was not listed again): the flips file
    would not match the comparison, so none is written. Retrying reads both runs afresh."""


def output_text(item: OutputItem) -> str | None:
    """The text the model answered (``sample.output[].content``); None when the sample has no output.

    Content is a string in the Evals API, or a list of parts (``{"type": "output_text", "text": ...}``)
    in the Responses shape; both are read, several messages joined by a newline.
    """
    output = (item.sample or {}).get("output")
    if not isinstance(output, list):
        return None
    texts: list[str] = []
    for message in output:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(
                part["text"]
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
    return "\n".join(texts) if texts else None


def item_side(item: OutputItem) -> dict[str, Any]:
    """One run's side of a flipped item: what the model said and how each grader judged it."""
    error = (item.sample or {}).get("error")
    return {
        "run_id": item.run_id,
        "output_item_id": item.id,
        "status": item.status,
        "output_text": output_text(item),
        "error": error if isinstance(error, dict) and (error.get("code") or error.get("message")) else None,
        "results": [r.model_dump(mode="json", exclude_unset=True) for r in item.results],
    }


@dataclass
class FlipSpool:
    """The candidate's side of each flipped item, written as it is paired: ids in memory, sides on a spool."""

    file: IO[bytes]
    #: datasource_item_id -> (offset, length) of its record in ``file``
    index: dict[int, tuple[int, int]] = field(default_factory=dict)

    def add(self, flip: Flip) -> None:
        record = {
            "direction": flip.overall,
            "criteria": dict(flip.criteria),
            "candidate": item_side(flip.candidate),
        }
        data = json.dumps(record, ensure_ascii=False).encode()
        self.file.seek(0, 2)
        self.index[flip.datasource_item_id] = (self.file.tell(), len(data))
        self.file.write(data)

    def read(self, key: int) -> dict[str, Any]:
        offset, length = self.index[key]
        self.file.seek(offset)
        record: dict[str, Any] = json.loads(self.file.read(length))
        return record


def write_flips(
    baseline_pages: Iterable[list[OutputItem]],
    spool: FlipSpool,
    write: Callable[[bytes], object],
    baseline_id: str,
) -> tuple[int, int]:
    """Pass 2: each flipped item of the baseline's pages becomes one line with both runs' sides.

    Returns (lines, bytes) written. Raises ``FlipsChanged`` when the baseline no longer lists every
    flipped item, since the file would then not match the comparison.
    """
    wanted = spool.index
    written: set[int] = set()
    size = 0
    for items in baseline_pages:
        for item in items:
            key = item.datasource_item_id
            if key is None or key not in wanted or key in written:
                continue
            record = spool.read(key)
            line = {
                "datasource_item_id": key,
                "direction": record["direction"],
                "criteria": record["criteria"],
                "item": item.datasource_item,
                "baseline": item_side(item),
                "candidate": record["candidate"],
            }
            data = json.dumps(line, ensure_ascii=False).encode() + b"\n"
            write(data)
            size += len(data)
            written.add(key)
    if len(written) != len(wanted):
        missing = sorted(set(wanted) - written)
        raise FlipsChanged(
            f"baseline run {baseline_id} no longer lists {len(missing)} of the "
            f"{len(wanted)} flipped items (datasource_item_id {missing[:5]}...); no flips file "
            "written"
        )
    return len(written), size
