"""Notifications over HTTP: paging, read state, unread count, ownership."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from relaypacs.db.base import utcnow
from relaypacs.notifications.models import NotificationType, StreamEvent, StreamTicket
from relaypacs.notifications.tasks import prune_stream_log
from tests.support.accounts import assert_problem, sign_in
from tests.support.jobs import job_context
from tests.support.live_events import API, notify


async def test_notifications_page_newest_first_with_a_cursor(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    ids = [await notify(app, user.id, title=f"n{i}") for i in range(5)]

    first = await client.get(f"{API}/notifications?limit=2", headers=user.headers)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [item["id"] for item in page["items"]] == [str(ids[4]), str(ids[3])]
    seen = [item["id"] for item in page["items"]]
    cursor = page["next_cursor"]
    while cursor:
        response = await client.get(
            f"{API}/notifications", params={"limit": 2, "cursor": cursor}, headers=user.headers
        )
        assert response.status_code == 200
        seen += [item["id"] for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
    assert seen == [str(i) for i in reversed(ids)]


async def test_read_state_drives_unread_count_and_filter(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    first = await notify(app, user.id, NotificationType.upload_complete)
    await notify(app, user.id, NotificationType.report_ready)
    count = await client.get(f"{API}/notifications/unread-count", headers=user.headers)
    assert count.json() == {"count": 2}

    read = await client.patch(
        f"{API}/notifications/{first}", json={"read": True}, headers=user.headers
    )
    assert read.status_code == 200
    assert read.json()["read"] is True
    assert read.json()["read_at"]
    unread = await client.get(f"{API}/notifications?unread=true", headers=user.headers)
    assert [n["type"] for n in unread.json()["items"]] == ["report_ready"]
    count = await client.get(f"{API}/notifications/unread-count", headers=user.headers)
    assert count.json() == {"count": 1}

    again = await client.patch(
        f"{API}/notifications/{first}", json={"read": False}, headers=user.headers
    )
    assert again.json()["read"] is False
    all_read = await client.post(f"{API}/notifications/read-all", headers=user.headers)
    assert all_read.json() == {"marked_read": 2, "count": 0}
    count = await client.get(f"{API}/notifications/unread-count", headers=user.headers)
    assert count.json() == {"count": 0}


async def test_another_users_notification_is_not_found_and_stays_unread(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    owner = await sign_in(client, app)
    other = await sign_in(client, app)
    notification = await notify(app, owner.id)

    response = await client.patch(
        f"{API}/notifications/{notification}", json={"read": True}, headers=other.headers
    )
    assert_problem(response, 404, "notification_not_found")
    listed = await client.get(f"{API}/notifications", headers=other.headers)
    assert listed.json()["items"] == []
    count = await client.get(f"{API}/notifications/unread-count", headers=owner.headers)
    assert count.json() == {"count": 1}


async def test_bad_inputs_are_problems(client: httpx.AsyncClient, app: FastAPI) -> None:
    user = await sign_in(client, app)
    response = await client.get(f"{API}/notifications?cursor=not-a-cursor", headers=user.headers)
    assert_problem(response, 400, "invalid_cursor")
    response = await client.get(f"{API}/notifications?limit=0", headers=user.headers)
    assert_problem(response, 422, "validation_error")
    notification = await notify(app, user.id)
    response = await client.patch(
        f"{API}/notifications/{notification}", json={"read": "maybe"}, headers=user.headers
    )
    assert_problem(response, 422, "validation_error")
    response = await client.patch(
        f"{API}/notifications/{notification}", json={"read": True, "x": 1}, headers=user.headers
    )
    assert_problem(response, 422, "validation_error")
    count = await client.get(f"{API}/notifications/unread-count", headers=user.headers)
    assert count.json() == {"count": 1}
    response = await client.get(f"{API}/notifications")
    assert_problem(response, 401, "not_authenticated")


async def test_the_event_log_and_used_tickets_are_pruned_after_their_time(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    user = await sign_in(client, app)
    await notify(app, user.id)
    now = utcnow()
    async with app.state.sessionmaker() as session:
        old = StreamEvent(user_id=user.id, event="unread_count", data={"count": 0})
        old.created_at = now - timedelta(hours=25)
        session.add(old)
        session.add(
            StreamTicket(
                token_hash="0" * 63 + "1",
                user_id=user.id,
                created_at=now - timedelta(hours=2),
                expires_at=now - timedelta(hours=2) + timedelta(seconds=60),
            )
        )
        await session.commit()
        old_id = old.id
    await prune_stream_log(job_context(app, "notifications.prune"), {})
    async with app.state.sessionmaker() as session:
        assert await session.get(StreamEvent, old_id) is None
        assert await session.get(StreamTicket, "0" * 63 + "1") is None
        kept = await session.scalars(select(StreamEvent).where(StreamEvent.user_id == user.id))
        assert len(kept.all()) == 2  # the fresh notification and its unread count
