"""The `relaypacs` command: serve, worker, migrate, admin."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

from relaypacs.client.commands import register as register_client_commands
from relaypacs.users.commands import register as register_admin_commands

# The server's modules (uvicorn, alembic, the ORM, the jobs worker, sentry, pydantic settings) are
# imported inside the commands that use them: a script running `relaypacs upload` once per study
# would otherwise pay over a second of imports each time for nothing.
if TYPE_CHECKING:
    from relaypacs.config import Settings

app = typer.Typer(help="RelayPACS gateway", no_args_is_help=True, add_completion=False)
admin_app = typer.Typer(help="Administration", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
# The uploader: login, upload, status, watch (relaypacs.client).
register_client_commands(app)


def load_settings() -> Settings:
    """The settings of a server command (serve, worker, migrate, admin).

    These commands write patient data (the SQLite database, assembled and archived instances):
    whatever umask the shell had, what they create is for the service's own user only.
    """
    from relaypacs.config import Settings, UnsafeConfigurationError

    os.umask(0o077)

    try:
        return Settings()
    except UnsafeConfigurationError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


register_admin_commands(admin_app, load_settings)


@app.command()
def migrate() -> None:
    """Apply database migrations up to the newest."""
    from relaypacs.db.migrate import upgrade

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    typer.echo("database is up to date")


@app.command()
def worker(
    concurrency: int | None = typer.Option(
        None, help="Jobs run at once (RELAYPACS_WORKER_CONCURRENCY)", min=1
    ),
) -> None:
    """Apply migrations, then run background jobs (no API) until SIGTERM/SIGINT."""
    from relaypacs.db.migrate import upgrade
    from relaypacs.jobs.worker import run_worker_process
    from relaypacs.operations.metrics import start_worker_metrics_server
    from relaypacs.operations.sentry import init_sentry

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    start_worker_metrics_server(settings.worker_metrics_port, settings.worker_metrics_host)
    # Job failures are errors too: report them like the API's (no patient data).
    init_sentry(settings)
    run_worker_process(settings, concurrency=concurrency)


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Bind address (RELAYPACS_HOST)"),
    port: int | None = typer.Option(None, help="Port (RELAYPACS_PORT)"),
    workers: int = typer.Option(1, help="Worker processes (PostgreSQL only)"),
) -> None:
    """Apply migrations, then serve the API (and, with the embedded defaults, the jobs)."""
    import uvicorn

    from relaypacs.db.migrate import upgrade
    from relaypacs.operations.metrics import prepare_multiprocess_dir
    from relaypacs.users.commands import announce_first_admin

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    announce_first_admin(settings)
    bind_host = host or settings.host
    bind_port = port or settings.port
    typer.echo(f"RelayPACS on http://{bind_host}:{bind_port}  (API docs: /docs)")
    # Before the worker processes start: they add their samples up in this directory.
    prepare_multiprocess_dir()
    uvicorn.run(
        "relaypacs.asgi:app",
        host=bind_host,
        port=bind_port,
        workers=workers,
        proxy_headers=True,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    app()
