"""`relaypacs admin ...` commands and the first-start admin account; `relaypacs.cli` wires them."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import typer

from relaypacs.users.roles import Role

# Only what listing the commands needs is imported here: `relaypacs.cli` imports this module for
# every command, the uploader's included, and SQLAlchemy with alembic take about a second.
if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from relaypacs.config import Settings

T = TypeVar("T")


def _run_in_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from relaypacs.db.engine import create_engine, create_sessionmaker
    from relaypacs.db.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Admin commands may be the first thing run on a new machine: bring the schema up first.
    upgrade(settings.resolved_database_url)

    async def main() -> T:
        engine = create_engine(
            settings.resolved_database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        try:
            async with create_sessionmaker(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(main())


def announce_first_admin(settings: Settings) -> None:
    """On a database without any admin, create `admin` and print its one-time password once."""
    from relaypacs.users import service

    async def work(session: AsyncSession) -> tuple[str, str] | None:
        created = await service.ensure_first_admin(session, settings)
        return (created[0].username, created[1]) if created else None

    created = _run_in_session(settings, work)
    if created is None:
        return
    username, password = created
    typer.echo(
        "\n"
        "  First start: an administrator account was created.\n"
        f"    username: {username}\n"
        f"    password: {password}   (shown only this once; change it at first sign-in)\n"
    )


def register(admin_app: typer.Typer, load_settings: Callable[[], Settings]) -> None:
    @admin_app.command("create-user")
    def create_user(
        username: str = typer.Option(..., help="3-50 of A-Z a-z 0-9 _ . -"),
        email: str = typer.Option(...),
        role: Role = typer.Option(Role.clinician, case_sensitive=False),
        password: str | None = typer.Option(
            None,
            help="Initial password; prompted for on a terminal, otherwise generated and printed",
        ),
    ) -> None:
        """Create an account of any role (the only way, with the admin API, to make an admin)."""
        from relaypacs.errors import RelayError
        from relaypacs.users import service

        settings = load_settings()
        generated = False
        if password is None:
            if sys.stdin.isatty():
                password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
            else:
                password = service.generate_password()
                generated = True

        async def work(session: AsyncSession) -> str:
            user = await service.create_user_as_admin(
                session,
                settings,
                None,
                actor_id=None,
                username=username,
                email=email,
                password=password,
                role=role,
                must_change_password=generated,
            )
            return str(user.id)

        try:
            user_id = _run_in_session(settings, work)
        except RelayError as exc:
            typer.echo(f"error: {exc.detail or exc.title} ({exc.code})", err=True)
            raise typer.Exit(1) from exc
        typer.echo(f"created {role.value} {username} ({user_id})")
        if generated:
            typer.echo(f"one-time password: {password}  (must be changed at first sign-in)")

    @admin_app.command("rotate-keys")
    def rotate_signing_keys() -> None:
        """Start signing tokens with a new key; tokens signed before stay valid until expiry."""
        from relaypacs.auth.keys import rotate_keys

        settings = load_settings()
        old_kid, new_kid = rotate_keys(
            settings.resolved_jwt_key_file,
            keep_retired_for=timedelta(minutes=settings.access_token_minutes + 5),
        )
        typer.echo(f"retired key {old_kid}; now signing with {new_kid}")
