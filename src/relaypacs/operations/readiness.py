"""Readiness checks: each dependency the gateway needs registers one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

ReadinessCheck = Callable[[], Awaitable[None]]


@dataclass
class Readiness:
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    timeout_seconds: float = 3.0
    #: Checked and shown, but the gateway serves without them (it degrades instead).
    optional: set[str] = field(default_factory=set)

    def register(self, name: str, check: ReadinessCheck, *, required: bool = True) -> None:
        self.checks[name] = check
        if not required:
            self.optional.add(name)

    def is_ready(self, results: dict[str, str]) -> bool:
        """Whether every required dependency answered in ``results`` (from :meth:`run`)."""
        return all(result == "ok" for name, result in results.items() if name not in self.optional)

    async def run(self) -> dict[str, str]:
        async def one(check: ReadinessCheck) -> str:
            try:
                await asyncio.wait_for(check(), self.timeout_seconds)
            except Exception as exc:  # a failing dependency is a result, not an error
                return f"unavailable: {type(exc).__name__}"
            return "ok"

        names = list(self.checks)
        results = await asyncio.gather(*(one(self.checks[n]) for n in names))
        return dict(zip(names, results, strict=True))


def database_check(engine: AsyncEngine) -> ReadinessCheck:
    async def check() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    return check
