"""A circuit breaker per destination, and the wrapper that applies it (plus metrics).

After ``failure_threshold`` consecutive destination-level failures (unreachable, timeouts, 5xx,
bad credentials) the circuit opens: calls fail at once with
:class:`~relaypacs.pacs.exceptions.CircuitOpen` instead of each waiting for a timeout, so a PACS
outage costs the queue no threads or connections. After ``reset_seconds`` one trial call is let
through (half-open); its success closes the circuit, its failure opens it again. Per-instance
refusals say the PACS is up and never open it. State is per process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import TypeVar

from relaypacs.operations.metrics import observe_stow, set_pacs_reachable
from relaypacs.pacs.destination import Destination, StowInstance, StowResult
from relaypacs.pacs.exceptions import CircuitOpen, DestinationError, DestinationMisconfigured

T = TypeVar("T")


class CircuitState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._state = CircuitState.closed
        self._trial_running = False

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.open and self._remaining() <= 0:
            return CircuitState.half_open
        return self._state

    def _remaining(self) -> float:
        return self._opened_at + self.reset_seconds - self._clock()

    def before_call(self) -> None:
        state = self.state
        if state is CircuitState.closed:
            return
        if state is CircuitState.open:
            raise CircuitOpen("circuit open after repeated failures", retry_after=self._remaining())
        if self._trial_running:
            raise CircuitOpen("circuit half-open: a trial request is running", retry_after=1.0)
        self._state = CircuitState.half_open
        self._trial_running = True

    def record_success(self) -> None:
        self._failures = 0
        self._trial_running = False
        self._state = CircuitState.closed

    def record_failure(self) -> None:
        self._trial_running = False
        self._failures += 1
        if self._state is CircuitState.half_open or self._failures >= self.failure_threshold:
            self._state = CircuitState.open
            self._opened_at = self._clock()

    def record_abandoned(self) -> None:
        """A call ended without a verdict on the destination (e.g. our own bytes were bad)."""
        self._trial_running = False


class GuardedDestination:
    """A destination behind its circuit breaker, reporting reachability and STOW metrics."""

    def __init__(self, destination: Destination, breaker: CircuitBreaker) -> None:
        self.destination = destination
        self.breaker = breaker

    @property
    def name(self) -> str:
        return self.destination.name

    @property
    def kind(self) -> str:
        return self.destination.kind

    async def store_instances(self, instances: Sequence[StowInstance]) -> StowResult:
        started = time.perf_counter()
        try:
            result = await self._guarded(lambda: self.destination.store_instances(instances))
        except CircuitOpen:
            raise
        except DestinationError:
            observe_stow(self.name, time.perf_counter() - started, failed=len(instances))
            raise
        observe_stow(
            self.name,
            time.perf_counter() - started,
            stored=len(result.stored),
            refused=len(result.refused),
            failed=len(result.failed),
        )
        return result

    async def count_instances(self, study_instance_uid: str) -> int:
        return await self._guarded(lambda: self.destination.count_instances(study_instance_uid))

    async def check(self) -> None:
        """The forwarding's reachability check before a study goes: a call like any other, so
        while the circuit is open it fails at once (:class:`CircuitOpen`, with the time left)
        instead of waiting on a PACS that is down, and its failures count towards opening it.
        ``DestinationMisconfigured`` passes through with no verdict: a STOW-only endpoint may
        not serve the QIDO-RS query, and the STOW-RS request itself will tell."""
        await self._guarded(self.destination.ping, inconclusive=(DestinationMisconfigured,))

    async def ping(self) -> None:
        # Readiness wants the truth even while the circuit is open, and a success closes it.
        try:
            await self.destination.ping()
        except DestinationError:
            set_pacs_reachable(self.name, reachable=False)
            raise
        set_pacs_reachable(self.name, reachable=True)
        if self.breaker.state is not CircuitState.closed:
            self.breaker.record_success()

    async def close(self) -> None:
        await self.destination.close()

    async def _guarded(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        inconclusive: tuple[type[DestinationError], ...] = (),
    ) -> T:
        self.breaker.before_call()
        try:
            value = await call()
        except inconclusive:
            self.breaker.record_abandoned()
            raise
        except DestinationError:
            self.breaker.record_failure()
            set_pacs_reachable(self.name, reachable=False)
            raise
        except BaseException:
            self.breaker.record_abandoned()
            raise
        self.breaker.record_success()
        set_pacs_reachable(self.name, reachable=True)
        return value
