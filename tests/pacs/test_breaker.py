"""The per-destination circuit breaker, and the forwarding's reachability check behind it."""

from __future__ import annotations

import pytest

from relaypacs.pacs.breaker import CircuitBreaker, CircuitState, GuardedDestination
from relaypacs.pacs.destinations.dicomweb import DicomWebDestination
from relaypacs.pacs.exceptions import CircuitOpen, DestinationMisconfigured, DestinationUnavailable
from tests.pacs.faulty_server import BAD_GATEWAY, NOT_FOUND, CountingServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_circuit_opens_after_consecutive_failures_and_fails_fast() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, reset_seconds=30, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    breaker.before_call()
    breaker.record_success()  # a success in between resets the count
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state is CircuitState.open
    with pytest.raises(CircuitOpen) as raised:
        breaker.before_call()
    assert raised.value.retry_after == 30


def test_half_open_lets_one_trial_through_and_its_outcome_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_seconds=10, clock=clock)
    breaker.before_call()
    breaker.record_failure()
    clock.now += 10
    assert breaker.state is CircuitState.half_open
    breaker.before_call()  # the trial
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # only one at a time
    breaker.record_failure()
    assert breaker.state is CircuitState.open
    clock.now += 10
    breaker.before_call()
    breaker.record_success()
    assert breaker.state is CircuitState.closed
    breaker.before_call()


async def test_the_forwardings_reachability_check_fails_fast_once_the_circuit_is_open() -> None:
    clock = Clock()
    async with CountingServer(BAD_GATEWAY) as pacs:
        guarded = GuardedDestination(
            DicomWebDestination("pacs", pacs.url, kind="orthanc"),
            CircuitBreaker(failure_threshold=2, reset_seconds=30, clock=clock),
        )
        try:
            for _ in range(2):
                with pytest.raises(DestinationUnavailable):
                    await guarded.check()
            asked = pacs.connections
            assert asked >= 2
            with pytest.raises(CircuitOpen) as raised:
                await guarded.check()
            assert raised.value.retry_after == 30
            assert pacs.connections == asked, "an open circuit must not reach the network"
            # Readiness still asks the PACS itself.
            with pytest.raises(DestinationUnavailable):
                await guarded.ping()
            assert pacs.connections > asked
            # Once the reset time has passed, one trial goes out again.
            clock.now += 30
            asked = pacs.connections
            with pytest.raises(DestinationUnavailable):
                await guarded.check()
            assert pacs.connections > asked
            assert guarded.breaker.state is CircuitState.open
        finally:
            await guarded.close()


async def test_a_pacs_without_qido_rs_never_opens_the_circuit_through_the_check() -> None:
    async with CountingServer(NOT_FOUND) as pacs:
        guarded = GuardedDestination(
            DicomWebDestination("pacs", pacs.url, kind="generic"),
            CircuitBreaker(failure_threshold=1, reset_seconds=30),
        )
        try:
            for _ in range(3):
                with pytest.raises(DestinationMisconfigured):
                    await guarded.check()
            assert guarded.breaker.state is CircuitState.closed
        finally:
            await guarded.close()
