"""Property: any order, duplication and interleaving of chunk PUTs gives the same bytes."""

from __future__ import annotations

import asyncio
import hashlib
import random

from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import client_for
from tests.support import uploads
from tests.support.accounts import sign_in

CHUNK = uploads.SMALL_CHUNK


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[int], list[list[tuple[int, int]]], int]:
    """File sizes, then the PUTs as batches sent concurrently (every chunk at least once)."""
    sizes = draw(
        st.lists(st.integers(min_value=1, max_value=3 * CHUNK + 17), min_size=1, max_size=3)
    )
    chunks = [(f, i) for f, size in enumerate(sizes) for i in range(-(-size // CHUNK))]
    repeats = draw(st.lists(st.sampled_from(chunks), max_size=len(chunks)))
    puts = draw(st.permutations(chunks + repeats))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(puts) - 1)), max_size=len(puts))))
    batches = [puts[a:b] for a, b in zip([0, *cuts], [*cuts, len(puts)], strict=True) if puts[a:b]]
    seed = draw(st.integers(0, 2**32 - 1))
    return sizes, batches, seed


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=schedules())
async def test_any_order_duplication_and_interleaving_gives_the_same_bytes(
    app: FastAPI, plan: tuple[list[int], list[list[tuple[int, int]]], int]
) -> None:
    sizes, batches, seed = plan
    generator = random.Random(seed)
    contents = [generator.randbytes(size) for size in sizes]
    async with client_for(app) as client:
        user = await sign_in(client, app)
        session = await uploads.start(client, user.headers, contents)
        for batch in batches:
            responses = await asyncio.gather(
                *(uploads.put(client, session, f, i) for f, i in batch)
            )
            assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
        before = await uploads.status(client, session)
        assert before["bytes_received"] == sum(sizes)
        status = await uploads.complete_and_wait(client, app, session)
    assert [f["sha256"] for f in status["files"]] == [
        hashlib.sha256(c).hexdigest() for c in contents
    ]
