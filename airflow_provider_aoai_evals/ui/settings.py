"""The UI's Airflow options and fixed limits. Imports nothing at module level: the provider info reads the
option's name and default from here at provider discovery, before Airflow's configuration is needed."""

from __future__ import annotations

#: Mount point of the plugin's FastAPI app in the api-server (not one of Airflow's reserved prefixes).
URL_PREFIX = "/aoai-evals"

#: (section, key) of how long list responses are kept in the api-server process.
CACHE_TTL_OPTION = ("aoai_evals", "ui_cache_ttl_seconds")
DEFAULT_CACHE_TTL_SECONDS = 60.0
#: Entries (eval run lists, eval lists, run pairings) one api-server process keeps at most; oldest go first.
CACHE_MAX_ENTRIES = 128

#: The Evals page charts the newest runs of an eval, at most this many (10 list requests of 100).
MAX_RUNS = 1000
#: Evals listed for a connection, at most.
MAX_EVALS = 500
#: Flipped items shown on the task tab, at most.
MAX_FLIPS_SHOWN = 20
#: Output items read per run when the tab pairs two runs itself; larger runs are not paired by the page.
MAX_PAIRED_ITEMS = 20_000
#: Characters of an item's input or output shown on the task tab.
MAX_TEXT_CHARS = 2_000
#: Verdict XComs read from the metadata DB to mark gated runs on the chart (newest first).
MAX_VERDICT_XCOMS = 5_000


def cache_ttl_seconds() -> float:
    """``[aoai_evals] ui_cache_ttl_seconds``, read at each request so a changed option applies at once."""
    from airflow.configuration import conf

    value = conf.getfloat(*CACHE_TTL_OPTION, fallback=DEFAULT_CACHE_TTL_SECONDS)
    return max(0.0, value)
