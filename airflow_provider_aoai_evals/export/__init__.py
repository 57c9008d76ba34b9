"""Export of eval run output items: encoding, de-duplication across pages and atomic writes.

Nothing here imports Airflow: the operator in ``operators/output_items.py`` wires these pieces to an
``ObjectStoragePath``, and the benchmark and tests can use them on plain fsspec filesystems.
"""

from __future__ import annotations

from airflow_provider_aoai_evals.export.atomic import atomic_write, temp_path_for
from airflow_provider_aoai_evals.export.dedupe import SeenIds
from airflow_provider_aoai_evals.export.formats import (
    CSV_COLUMNS,
    EXPORT_FORMATS,
    Encoder,
    csv_rows,
    encoder_for,
)
from airflow_provider_aoai_evals.export.stream import ExportStats, ItemLimitExceeded, stream_pages

__all__ = [
    "CSV_COLUMNS",
    "EXPORT_FORMATS",
    "Encoder",
    "ExportStats",
    "ItemLimitExceeded",
    "SeenIds",
    "atomic_write",
    "csv_rows",
    "encoder_for",
    "stream_pages",
    "temp_path_for",
]
