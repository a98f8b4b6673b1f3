"""The per-destination circuit breaker, and the forwarding's reachability check behind it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from relaypacs.config import Settings
from relaypacs.pacs.breaker import CircuitBreaker, CircuitState, GuardedDestination
from relaypacs.pacs.destination import StowInstance
from relaypacs.pacs.destinations.dicomweb import DicomWebDestination
from relaypacs.pacs.exceptions import CircuitOpen, DestinationMisconfigured, DestinationUnavailable
from relaypacs.uploads.stores.filesystem import FilesystemChunkStore
from tests.pacs.conftest import study
from tests.pacs.faulty_server import BAD_GATEWAY, NOT_FOUND, CountingServer, DrainingServer


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


async def test_an_instance_missing_from_our_own_disk_never_counts_against_the_pacs(
    tmp_path: Path,
) -> None:
    # The gateway's copy of an instance is gone from its disk (or cannot be opened: EMFILE)
    # while a healthy PACS takes the request: as many times as it takes to open the circuit.
    threshold = Settings.model_fields["pacs_breaker_failures"].default
    store = FilesystemChunkStore(tmp_path / "chunks")
    study_uid, [(uid, data)] = study(1)
    key = f"uploads/{study_uid}/instances/{uid}"
    source = tmp_path / "instance.dcm"
    source.write_bytes(data)
    await store.put_file(key, source)
    instance = StowInstance(
        sop_instance_uid=uid,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        study_instance_uid=study_uid,
        series_instance_uid=f"{study_uid}.1",
        size=len(data),
        open=lambda: store.read(key),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    store.path_of(key).unlink()
    async with DrainingServer() as pacs:
        guarded = GuardedDestination(
            DicomWebDestination("localread", pacs.url, kind="generic"),
            CircuitBreaker(failure_threshold=threshold, reset_seconds=3600),
        )
        try:
            for _ in range(threshold):
                # Our own read error, which the forwarding reports as the chunk store's; never
                # a destination error, which would blame the PACS.
                with pytest.raises(FileNotFoundError):
                    await guarded.store_instances([instance])
        finally:
            await guarded.close()
    assert guarded.breaker.state is CircuitState.closed
    up = REGISTRY.get_sample_value("relaypacs_pacs_up", {"destination": "localread"})
    assert up != 0.0, "the PACS was reported unreachable"
