"""Whether the task a trigger waits for is still deferred: told apart from a kill before ``on_kill`` cancels.

Why: Airflow 3.3 calls a trigger's ``on_kill`` on two occasions that look the same to the trigger: a user
marked the deferred task failed or succeeded, or cleared it (a kill: the run should be canceled), and
another triggerer adopted the trigger while this one was unresponsive (a frozen or overloaded triggerer
that comes back finds its triggers reassigned and cancels them "by user action", apache/airflow#73454).
The second must never cancel the run: the adopting triggerer is still waiting for it. Only the task
instance's state tells them apart: after a kill it is no longer ``deferred``; after a reassignment it is.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


async def still_deferred(task_instance: Any) -> bool | None:
    """True when the task instance is still ``deferred`` (the trigger moved; no kill), False when it is not,
    None when that cannot be known (no task instance, an Airflow without the call, or the call failed)."""
    if task_instance is None:
        return None
    try:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
        from asgiref.sync import sync_to_async
    except ImportError:
        return None
    try:
        count = await sync_to_async(RuntimeTaskInstance.get_ti_count)(
            dag_id=task_instance.dag_id,
            map_index=task_instance.map_index,
            task_ids=[task_instance.task_id],
            run_ids=[task_instance.run_id],
            states=["deferred"],
        )
    except Exception as exc:  # noqa: BLE001 - the state is a hint; on_kill decides without it
        log.warning(
            "Could not read the state of task %s.%s[%s] of %s: %r",
            task_instance.dag_id,
            task_instance.task_id,
            task_instance.map_index,
            task_instance.run_id,
            exc,
        )
        return None
    return int(count) > 0
