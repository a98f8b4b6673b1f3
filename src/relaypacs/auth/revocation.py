"""Credentials other domains hand out on a user's behalf, ended with the user's own.

Signing out everywhere, a new password and a disabled account end every sign-in of the user.
Some domains give out tokens that act for the user too (an upload token sends chunks and reads
the upload's patient data as its owner); those must end in the same transaction. The auth domain
knows nothing of them: each such domain registers, when its router module is imported (like an
export section of ``users.service``), a hook that ends what it handed out and says how many.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

#: Ends what a domain handed out for the user; returns how many it ended.
EndCredentials = Callable[[AsyncSession, uuid.UUID, datetime], Awaitable[int]]
_hooks: dict[str, EndCredentials] = {}


def register_delegated_credentials(name: str, end: EndCredentials) -> None:
    """``name``: the audit detail that counts what ``end`` ended (``upload_credentials_ended``);
    never "token" in it: audit details refuse such keys."""
    _hooks[name] = end


async def end_delegated_credentials(
    session: AsyncSession, user_id: uuid.UUID, now: datetime
) -> dict[str, int]:
    """Run every registered hook in the caller's transaction; counts by name, for the audit."""
    return {name: await end(session, user_id, now) for name, end in _hooks.items()}
