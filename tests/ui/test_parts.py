"""The UI's small parts on their own: the bounded cache, and reading a run's creator from its metadata."""

from __future__ import annotations

import pytest

from airflow_provider_aoai_evals.ui.airflow_data import TaskInstanceRef, creator_of
from airflow_provider_aoai_evals.ui.cache import TTLCache

pytestmark = pytest.mark.compat


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_keeps_a_value_for_its_ttl_only():
    clock, loads = Clock(), []
    cache = TTLCache(4, clock)

    def load() -> int:
        loads.append(1)
        return len(loads)

    assert cache.get_or_load("k", 10, load) == 1
    clock.now = 9.9
    assert cache.get_or_load("k", 10, load) == 1
    clock.now = 10.0
    assert cache.get_or_load("k", 10, load) == 2
    assert cache.get_or_load("k", 0, load) == 3  # ttl 0: always loads
    assert cache.get_or_load("k", 0, load) == 4


def test_the_cache_is_bounded_and_drops_the_least_recently_used():
    cache = TTLCache(3, Clock())
    for key in "abc":
        cache.get_or_load(key, 60, key.lower)  # returns the key itself
    cache.get_or_load("a", 60, lambda: "reloaded")  # a hit: "a" becomes the most recently used
    cache.get_or_load("d", 60, lambda: "d")
    assert len(cache) == 3
    assert cache.get_or_load("b", 60, lambda: "b again") == "b again"  # "b" was dropped
    assert cache.get_or_load("a", 60, lambda: "not loaded") == "a"


def test_a_failing_load_caches_nothing():
    cache = TTLCache(3, Clock())

    def boom() -> int:
        raise RuntimeError("api down")

    with pytest.raises(RuntimeError):
        cache.get_or_load("k", 60, boom)
    assert cache.get_or_load("k", 60, lambda: 7) == 7


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "d/t/manual__2025-01-01T00:00:00+00:00/-1|try=1",
            TaskInstanceRef("d", "t", "manual__2025-01-01T00:00:00+00:00", -1),
        ),
        ("d/t/scheduled__x/3|try=2", TaskInstanceRef("d", "t", "scheduled__x", 3)),
        ("d/t/run/with/slashes/0|try=1", TaskInstanceRef("d", "t", "run/with/slashes", 0)),
        ("sha256:abcdef|try=1", None),
        ("d/t/run/not-an-int|try=1", None),
        ("garbage", None),
    ],
)
def test_the_creator_is_read_from_the_idempotency_key(key, expected):
    assert creator_of({"airflow_idempotency_key": key}) == expected


def test_a_run_without_the_key_has_no_creator():
    assert creator_of(None) is None
    assert creator_of({"other": "x"}) is None


def test_task_instance_paths_encode_the_run_id_and_add_the_map_index():
    ti = TaskInstanceRef("d", "t", "manual__2025-01-01T00:00:00+00:00", 2)
    assert ti.ui_path == "/dags/d/runs/manual__2025-01-01T00%3A00%3A00%2B00%3A00/tasks/t/mapped/2"


def test_loading_the_plugin_does_not_build_the_app():
    """Every Airflow process loads plugins; only the api-server needs the app (FastAPI, the security module)."""
    import subprocess
    import sys

    code = (
        "import sys; from airflow_provider_aoai_evals.ui.plugin import AoaiEvalsUIPlugin; "
        "print('airflow_provider_aoai_evals.ui.app' in sys.modules); "
        "apps = AoaiEvalsUIPlugin().fastapi_apps; "
        "print('airflow_provider_aoai_evals.ui.app' in sys.modules, apps[0]['url_prefix'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "/aoai-evals"]
