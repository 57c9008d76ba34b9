"""The wait policy: when a wait for one eval run is over, and when it shows its progress.

Three loops wait for runs: the trigger (async, in the triggerer), the run operators' polling mode (a sleep
loop on a worker) and the sensor's poke mode (Airflow calls ``poke`` again). They must agree on what ends a
wait, so each only does its I/O (poll, sleep, log, yield or raise) and asks ``WaitPolicy`` what an
observation means. The policy reads no clock and makes no request: a caller passes the time, in epoch
seconds, the clock a wait's deadline is kept on (a trigger's deadline survives a triggerer restart).

Progress is shown as a run's progress line: once per change of what that line shows (status and counts),
and again after ``heartbeat`` seconds without a change, so a reader sees a long wait is alive without
reading the same line on every poll.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass, field

from airflow_provider_aoai_evals.api.models import EvalRun, is_terminal

#: Transient poll failures in a row tolerated before a wait gives up. Each poll already retries with
#: backoff inside the client, so this counts polls that failed after their retries.
DEFAULT_MAX_CONSECUTIVE_FAILURES = 10


class Verdict(enum.Enum):
    """What a wait does after an observation."""

    #: Not over: poll again after ``WaitPolicy.pause``.
    WAIT = "wait"
    #: The run ended in a status the wait accepts.
    DONE = "done"
    #: The run ended in another terminal status.
    FAILED = "failed"
    #: The deadline passed before the run ended.
    TIMED_OUT = "timed_out"
    #: Too many transient poll failures in a row.
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    #: Show the run's progress line now.
    log_progress: bool = False
    #: For FAILED: the API's own error message for the run, if it gave one.
    api_message: str | None = None
    #: The wait has ended (any verdict but WAIT). Stored, not computed: it is read on every poll.
    over: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "over", self.verdict is not Verdict.WAIT)


# Made once: a poll that changes nothing must not allocate a decision.
_WAIT = Decision(Verdict.WAIT)
_SHOW_PROGRESS = Decision(Verdict.WAIT, log_progress=True)
_DONE = Decision(Verdict.DONE, log_progress=True)
_TIMED_OUT = Decision(Verdict.TIMED_OUT)
_GIVE_UP = Decision(Verdict.GIVE_UP)


@dataclass(eq=False, kw_only=True, slots=True)
class WaitPolicy:
    """The rules of one wait and the little it remembers between polls.

    Made when a wait starts and kept until it ends; a triggerer holds thousands at once, so it is one small
    slotted object whose rules are references the caller already holds.

    :param poll_interval: seconds between polls.
    :param deadline: the end of the wait (epoch seconds), or None when something else ends it (Airflow ends
        a poking sensor at its ``timeout``).
    :param success_statuses: terminal statuses that are DONE; any other terminal status is FAILED.
    :param max_consecutive_failures: transient poll failures in a row that GIVE_UP; None never gives up.
    :param heartbeat: seconds after which an unchanged run's progress is shown again; None shows it only when
        it changes, 0 on every observation.
    """

    poll_interval: float
    deadline: float | None
    success_statuses: Collection[str]
    max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES
    heartbeat: float | None = None
    #: Transient poll failures since the last successful poll.
    failures: int = field(default=0, init=False)
    #: The run's status at the last successful poll (None before one), for a timeout's message.
    last_status: str | None = field(default=None, init=False)
    _progress: tuple[str, int, int, int, int, int] | None = field(default=None, init=False, repr=False)
    _shown_at: float = field(default=0.0, init=False, repr=False)

    def before_poll(self, now: float) -> Decision:
        """TIMED_OUT once the deadline has passed, else WAIT (go on and poll)."""
        if self.deadline is not None and now >= self.deadline:
            return _TIMED_OUT
        return _WAIT

    def observe(self, run: EvalRun, now: float) -> Decision:
        """A successful poll found ``run``: DONE, FAILED or WAIT, and whether to show its progress now."""
        self.failures = 0
        status = self.last_status = run.status
        counts = run.result_counts
        # What the progress line shows, so a line is shown when its text would change.
        progress = (
            (status, counts.total, counts.passed, counts.failed, counts.errored, counts.skipped or 0)
            if counts is not None
            else (status, 0, 0, 0, 0, 0)
        )
        show = progress != self._progress or (
            self.heartbeat is not None and now - self._shown_at >= self.heartbeat
        )
        if show:
            self._progress, self._shown_at = progress, now
        if is_terminal(status):
            if status in self.success_statuses:
                return _DONE
            message = run.error.message if run.error is not None else None
            return Decision(Verdict.FAILED, log_progress=True, api_message=message)
        return _SHOW_PROGRESS if show else _WAIT

    def poll_failed(self) -> Decision:
        """A poll failed transiently (a permanent failure ends a wait without asking): GIVE_UP when that
        makes ``max_consecutive_failures`` in a row, else WAIT."""
        self.failures += 1
        limit = self.max_consecutive_failures
        if limit is not None and self.failures >= limit:
            return _GIVE_UP
        return _WAIT

    def pause(self, now: float) -> float:
        """Seconds to sleep before the next poll: the poll interval, cut short by the deadline."""
        if self.deadline is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, self.deadline - now))
