"""The wait policy: when a wait for one eval run is over, and when it shows its progress.

Three loops wait for runs: the trigger (async, in the triggerer), the run operators' polling mode (a sleep
loop on a worker) and the sensor's poke mode (Airflow calls ``poke`` again). They must agree on what ends a
wait, so each only does its I/O (poll, sleep, log, yield or raise) and asks ``WaitPolicy`` what an
observation means. The policy reads no clock and makes no request: a caller passes the time, in epoch
seconds, the clock a wait's deadline is kept on (a trigger's deadline survives a triggerer restart).

Progress is shown as a run's progress line: once per change of what that line shows (status and counts),
and again after ``heartbeat`` seconds without a change, so a reader sees a long wait is alive without
reading the same line on every poll.

A wait that ends at its deadline or over its token budget may have to cancel the run first, or it would
go on spending after nobody waits for it; the policy says when (``Decision.cancel``), the callers do the
cancel with their own transport and report it as a ``CancelOutcome``.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass, field

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.models import EvalRun, RunStatus, is_terminal

#: Transient poll failures in a row tolerated before a wait gives up. Each poll already retries with
#: backoff inside the client, so this counts polls that failed after their retries.
DEFAULT_MAX_CONSECUTIVE_FAILURES = 10
#: Upper bound in seconds of the cancel a wait makes when it ends at its deadline or over budget.
DEFAULT_CANCEL_TIMEOUT = 30.0
#: What a deferred task's own timeout adds, beyond the cancel's bound and a triggerer's adoption, for an
#: event loop thousands of waits share: a loop that runs late notices the deadline late, and a trigger
#: another triggerer adopted reads its connection (maybe from a remote secrets backend) before it cancels.
DEFERRAL_SLACK_SECONDS = 60.0


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
    #: The run has used more tokens than the wait's budget allows (cancel it if it is still going).
    OVER_BUDGET = "over_budget"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    #: Show the run's progress line now.
    log_progress: bool = False
    #: For FAILED: the API's own error message for the run, if it gave one.
    api_message: str | None = None
    #: Cancel the run before the wait ends: a timeout with ``cancel_on_timeout``, or a run still going
    #: over budget. A run that has ended has nothing left to spend, so it is never set for one.
    cancel: bool = False
    #: For OVER_BUDGET: the tokens the run had used when it was seen over budget.
    tokens_used: int | None = None
    #: The wait has ended (any verdict but WAIT). Stored, not computed: it is read on every poll.
    over: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "over", self.verdict is not Verdict.WAIT)


# Made once: a poll that changes nothing must not allocate a decision.
_WAIT = Decision(Verdict.WAIT)
_SHOW_PROGRESS = Decision(Verdict.WAIT, log_progress=True)
_DONE = Decision(Verdict.DONE, log_progress=True)
_TIMED_OUT = Decision(Verdict.TIMED_OUT)
_TIMED_OUT_CANCEL = Decision(Verdict.TIMED_OUT, cancel=True)
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
    :param max_total_tokens: the run's token budget (``per_model_usage[].total_tokens`` summed); a run seen
        over it is OVER_BUDGET, to be cancelled while it is still going. None: no budget.
    :param cancel_on_timeout: a wait that times out cancels the run first.
    """

    poll_interval: float
    deadline: float | None
    success_statuses: Collection[str]
    max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES
    heartbeat: float | None = None
    max_total_tokens: int | None = None
    cancel_on_timeout: bool = False
    #: Transient poll failures since the last successful poll.
    failures: int = field(default=0, init=False)
    #: The run's status at the last successful poll (None before one), for a timeout's message.
    last_status: str | None = field(default=None, init=False)
    _progress: tuple[str, int, int, int, int, int] | None = field(default=None, init=False, repr=False)
    _shown_at: float = field(default=0.0, init=False, repr=False)

    def before_poll(self, now: float) -> Decision:
        """TIMED_OUT once the deadline has passed, else WAIT (go on and poll)."""
        if self.deadline is not None and now >= self.deadline:
            return self.timed_out()
        return _WAIT

    def timed_out(self) -> Decision:
        """TIMED_OUT, whoever kept the deadline: this policy, or Airflow (a poking sensor's ``timeout``, a
        deferral's timeout when no triggerer ran the trigger)."""
        return _TIMED_OUT_CANCEL if self.cancel_on_timeout else _TIMED_OUT

    def observe(self, run: EvalRun, now: float) -> Decision:
        """A successful poll found ``run``: DONE, FAILED, OVER_BUDGET or WAIT, and whether to show its
        progress now. Over budget comes first: a run that finished over budget spent more than allowed
        whatever its status, so it must not pass as DONE."""
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
        terminal = is_terminal(status)
        if self.max_total_tokens is not None:
            used = total_tokens(run)
            if used > self.max_total_tokens:
                return Decision(Verdict.OVER_BUDGET, log_progress=True, cancel=not terminal, tokens_used=used)
        if terminal:
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


def total_tokens(run: EvalRun) -> int:
    """The tokens a run has used so far, over all its models (what a token budget is checked against)."""
    return sum(int(usage.total_tokens or 0) for usage in run.per_model_usage or ())


def deferral_margin(*, cancel_timeout: float, adoption_seconds: float) -> float:
    """How long after the trigger's deadline a deferred task's own timeout may fire.

    The trigger enforces the deadline itself, cancelling the run first when asked; Airflow's timeout of the
    deferral must not win that race while a triggerer runs, or the task fails with the run still going. So
    it waits for what the trigger may still need after its deadline: the cancel (``cancel_timeout``), the
    adoption of the trigger by another triggerer when its own died just before the deadline (the dead
    one's heartbeat must first be older than ``[triggerer] triggerer_health_check_threshold``), and
    ``DEFERRAL_SLACK_SECONDS`` for a loaded event loop.
    """
    return cancel_timeout + adoption_seconds + DEFERRAL_SLACK_SECONDS


# A run in one of these statuses when the cancel answered had ended on its own: nothing was canceled.
_ENDED_ON_ITS_OWN = frozenset({RunStatus.COMPLETED, RunStatus.FAILED})


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """What cancelling a run at the end of its wait did, for the trigger's event and the task's error."""

    #: The run is canceled (or being canceled): the cancel was answered and the run had not ended first.
    canceled: bool
    #: The run's status in the cancel's answer; None when the cancel got no answer.
    status: str | None = None
    #: Why the cancel failed (no secret: the API errors' text is scrubbed), None when it was answered.
    error: str | None = None

    @classmethod
    def answered(cls, status: str) -> CancelOutcome:
        return cls(canceled=status not in _ENDED_ON_ITS_OWN, status=status)

    @classmethod
    def failed(cls, error: str) -> CancelOutcome:
        return cls(canceled=False, error=error)

    def describe(self) -> str:
        """The clause a task's failure message ends with."""
        if self.error is not None:
            return f"cancelling it failed ({self.error}), so it may still be running and spending"
        if self.canceled:
            return f"it was canceled (status now {self.status!r})"
        return f"it had already ended {self.status!r} on its own, so nothing was canceled"

    def to_event(self) -> dict[str, object]:
        """The keys a trigger event carries about the cancel (JSON values only)."""
        return {"canceled": self.canceled, "cancel_status": self.status, "cancel_error": self.error}


def check_token_budget(value: object) -> int | None:
    """A token budget as given to a task: None, or a whole number of tokens above zero."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise EvalsConfigError(
            "max_total_tokens", f"must be a positive whole number of tokens or None, got {value!r}"
        )
    return value


def check_flag(parameter: str, value: object) -> bool:
    """A yes/no parameter: only a bool (a string such as "false" would be true)."""
    if not isinstance(value, bool):
        raise EvalsConfigError(parameter, f"must be True or False, got {value!r}")
    return value
