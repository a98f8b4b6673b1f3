"""Typer commands of the uploader; `relaypacs.cli` registers them. Logic lives in the modules."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

import typer

from relaypacs.client.api import ApiError, ClientError, GaveUp
from relaypacs.client.credentials import CredentialStore
from relaypacs.client.exit_codes import ExitCode
from relaypacs.client.progress import JsonReporter, QuietReporter, RichReporter, left_out_lines
from relaypacs.client.run import (
    LOGIN_GIVE_UP_S,
    STATUS_GIVE_UP_S,
    WAIT_GIVE_UP_S,
    Connection,
    exit_code_for,
    fetch_status,
    login,
    login_connection,
    status_connection,
    upload_paths,
    wait_status,
)
from relaypacs.client.studies import Study
from relaypacs.client.uploader import UploadOptions, final_outcome, study_label
from relaypacs.client.watch import watch_folder

SERVICE_LEVELS = ("stat", "emergency", "routine")

ServerOption = typer.Option(
    None,
    "--server",
    envvar="RELAYPACS_SERVER",
    help="Gateway URL, e.g. https://relay.example.org (default: the last one signed in to)",
)
StallOption = typer.Option(
    60.0, "--stall-timeout", min=1.0, help="Abandon and retry a request after this many idle s"
)
VerboseOption = typer.Option(
    False, "--verbose", "-v", help="Log every retry and its reason to stderr"
)
GiveUpOption = typer.Option(
    3600.0,
    "--give-up-after",
    min=1.0,
    help="Stop after this many seconds without any progress (no chunk stored, no answer)",
)


def _server(server: str | None) -> str:
    chosen = server or CredentialStore().default_server()
    if not chosen:
        typer.echo("no server given: pass --server URL (or run `relaypacs login`)", err=True)
        raise typer.Exit(ExitCode.USAGE)
    if not chosen.startswith(("http://", "https://")):
        typer.echo(f"--server must be an http:// or https:// URL, not {chosen!r}", err=True)
        raise typer.Exit(ExitCode.USAGE)
    return chosen.rstrip("/")


def _unreachable(server: str, error: GaveUp, seconds: float, hint: str = "") -> typer.Exit:
    typer.echo(
        f"error: cannot reach {server} ({error.last_failure}, tried for {seconds:.0f} s): "
        f"check the URL and the network{hint}",
        err=True,
    )
    return typer.Exit(ExitCode.GAVE_UP)


def _fail(error: BaseException, *, login_hint: bool = True) -> typer.Exit:
    code = exit_code_for(error)
    # Not for `relaypacs login` itself: there the user just typed the password that was wrong.
    hint = " (run `relaypacs login`)" if login_hint and code is ExitCode.NOT_SIGNED_IN else ""
    typer.echo(f"error: {error}{hint}", err=True)
    return typer.Exit(code)


def login_command(
    server: str = typer.Option(..., "--server", envvar="RELAYPACS_SERVER", help="Gateway URL"),
    username: str = typer.Option(..., "--username", "-u", prompt=True),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input (for scripts)"
    ),
    totp_code: str | None = typer.Option(None, "--totp", help="Current 2FA code, if enabled"),
) -> None:
    """Sign in and keep the (single-use, rotating) refresh token in your config dir, mode 0600."""
    connection = login_connection(_server(server))
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True)

    def ask_totp() -> str:
        return str(typer.prompt("Two-factor code"))

    try:
        must_change = asyncio.run(login(connection, username, password, ask_totp, totp_code))
    except GaveUp as error:
        raise _unreachable(connection.server, error, LOGIN_GIVE_UP_S) from None
    except ApiError as error:
        if error.status != 429:
            raise _fail(error, login_hint=False) from None
        # Locked after failed sign-ins, or rate limited: only waiting helps, so say how long.
        when = f"in {math.ceil(error.retry_after)} s" if error.retry_after else "later"
        typer.echo(f"error: too many sign-in attempts; try again {when}", err=True)
        raise typer.Exit(exit_code_for(error)) from None
    except ClientError as error:
        raise _fail(error, login_hint=False) from None
    typer.echo(f"signed in to {connection.server} as {username}")
    if must_change:
        typer.echo(
            "your password is temporary: change it in the web app before uploading", err=True
        )


def _log_retries(verbose: bool) -> None:
    if verbose:
        logging.basicConfig(
            level=logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stderr
        )
        logging.getLogger("relaypacs.client").setLevel(logging.INFO)


def _reporter(quiet: bool, as_json: bool) -> QuietReporter:
    if as_json:
        return JsonReporter()
    if quiet:
        return QuietReporter()
    return RichReporter()


def _ask_duplicate(reporter: QuietReporter) -> Any:
    if isinstance(reporter, JsonReporter) or not sys.stdin.isatty():
        return None

    def ask(study: Study, problem: dict[str, Any]) -> bool:
        detail = problem.get("detail") or "the server already has a study like this"
        with reporter.paused():
            return bool(
                typer.confirm(
                    f"{study_label(study)}: {detail}. Send it again anyway?", default=False
                )
            )

    return ask


def _check_paths_exist(paths: list[Path]) -> None:
    """A given path that does not exist is a typo (`/media/cdrmo`), not "nothing to send": a
    usage error before anything is sent. Unreadable files are left to the scan, which lists them
    as skipped with the reason."""
    missing = [path for path in paths if not path.exists()]
    for path in missing:
        typer.echo(f"no such file or folder: {path}", err=True)
    if missing:
        raise typer.Exit(ExitCode.USAGE)


def upload_command(
    paths: list[Path] = typer.Argument(..., help="DICOM files, folders (recursive) and ZIPs"),
    server: str | None = ServerOption,
    service_level: str | None = typer.Option(
        None, "--service-level", help="stat, emergency or routine (default: your preference)"
    ),
    clinical_history: str | None = typer.Option(None, "--clinical-history"),
    force: bool = typer.Option(False, "--force", help="Send studies the server already has"),
    parallel: int = typer.Option(4, "--parallel", min=1, max=32, help="Chunks in flight"),
    chunk_size: int | None = typer.Option(
        None, "--chunk-size", help="Bytes per chunk (server default when omitted)"
    ),
    wait: bool = typer.Option(False, "--wait", help="Wait until the PACS has every study"),
    wait_timeout: float = typer.Option(3600.0, "--wait-timeout", min=1.0),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only failures"),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout at the end"),
    stall_timeout: float = StallOption,
    give_up_after: float = GiveUpOption,
    verbose: bool = VerboseOption,
) -> None:
    """Upload DICOM studies: one upload per StudyInstanceUID; run again to resume.

    Exit codes: 0 done, 1 error, 2 usage, 3 duplicate skipped, 4 not signed in,
    5 no DICOM, 6 refused by the server, 7 gave up (no progress), 8 not delivered,
    9 --wait timed out, 10 delivered but files left out, 130 interrupted.
    """
    if service_level is not None and service_level not in SERVICE_LEVELS:
        typer.echo(f"--service-level must be one of {', '.join(SERVICE_LEVELS)}", err=True)
        raise typer.Exit(ExitCode.USAGE)
    _check_paths_exist(paths)
    connection = Connection(_server(server), stall_timeout, give_up_after, parallel)
    _log_retries(verbose)
    reporter = _reporter(quiet, as_json)
    options = UploadOptions(
        service_level=service_level,
        clinical_history=clinical_history,
        force=force,
        parallel=parallel,
        chunk_size=chunk_size,
        wait=wait,
        wait_timeout=wait_timeout,
        confirm_duplicate=_ask_duplicate(reporter),
    )
    code = ExitCode.OK
    extra: dict[str, Any] = {}
    try:
        with reporter:
            run = asyncio.run(upload_paths(connection, paths, options, reporter))
        code = run.exit_code
        extra = run.summary()
        if code is ExitCode.NOTHING_TO_UPLOAD and not isinstance(reporter, JsonReporter):
            typer.echo("no DICOM files found", err=True)
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
        typer.echo("interrupted: run the same command again to resume", err=True)
    except ClientError as error:
        if not isinstance(reporter, JsonReporter):
            raise _fail(error) from None
        code = exit_code_for(error)
        extra = {"error": str(error)}
    if isinstance(reporter, JsonReporter):
        typer.echo(reporter.document(code, extra))
    raise typer.Exit(code)


def _print_status(status: dict[str, Any]) -> None:
    received = status.get("bytes_received")
    total = status.get("bytes_total")
    line = f"{status.get('upload_id', '')} {status.get('state')}"
    if isinstance(received, int) and isinstance(total, int) and total:
        line += f"  {received}/{total} bytes ({100 * received / total:.0f}%)"
    typer.echo(line)


def _print_details(status: dict[str, Any]) -> None:
    for file in status.get("files", []) or []:
        if isinstance(file, dict) and file.get("missing_chunks"):
            typer.echo(f"  {file.get('name')}: chunks missing {file.get('missing_chunks')}")
        for problem in (file.get("problems") or []) if isinstance(file, dict) else []:
            typer.echo(f"  {file.get('name')}: {problem.get('status')}: {problem.get('reason')}")
    outcomes: dict[str, int] = {}
    for instance in status.get("instances", []) or []:
        key = str(instance.get("forward_status"))
        outcomes[key] = outcomes.get(key, 0) + 1
        if instance.get("forward_reason"):
            typer.echo(f"  {instance.get('sop_instance_uid')}: {instance['forward_reason']}")
    if outcomes:
        summary = ", ".join(f"{n} {state}" for state, n in sorted(outcomes.items()))
        typer.echo(f"  instances: {summary}")
    for event in status.get("timeline", []) or []:
        detail = f" ({event['detail']})" if event.get("detail") else ""
        typer.echo(f"  {event.get('at')}  {event.get('state')}{detail}")


def _print_outcome(status: dict[str, Any], upload_id: str, wait_timeout: float) -> None:
    """The end of a wait, as `upload --wait` reports it: why the study was not delivered, and
    each file left out with the gateway's reason."""
    final = final_outcome(status)
    if final is None:
        typer.echo(f"still {status.get('state')} after {wait_timeout:.0f} s")
        return
    typer.echo(final.message)
    for line in left_out_lines(final.left_out, upload_id):
        typer.echo(line)


def status_command(
    upload_id: str = typer.Argument(..., help="The upload id printed by `relaypacs upload`"),
    server: str | None = ServerOption,
    wait: bool = typer.Option(False, "--wait", help="Wait until delivered (or ended otherwise)"),
    wait_timeout: float = typer.Option(3600.0, "--wait-timeout", min=1.0),
    as_json: bool = typer.Option(False, "--json", help="Print the status document as JSON"),
    give_up_after: float | None = typer.Option(
        None,
        "--give-up-after",
        min=1.0,
        help="Stop after this many seconds without an answer from the gateway "
        f"(default {STATUS_GIVE_UP_S:.0f}; with --wait {WAIT_GIVE_UP_S:.0f})",
        show_default=False,
    ),
    verbose: bool = VerboseOption,
) -> None:
    """Show an upload's state; with --wait, follow it until the PACS has it.

    Exit codes: 0 delivered (or not ended yet), 1 error, 2 usage, 4 not signed in,
    6 refused by the server (e.g. no such upload), 7 gave up (server unreachable),
    8 not delivered, 9 --wait timed out, 10 delivered but files left out,
    130 interrupted.
    """
    if give_up_after is None:
        # A one-off look is abandoned as soon as a sign-in would be; a --wait follows a study
        # over the same bad link an upload crosses, and keeps trying as long as an upload does.
        give_up_after = WAIT_GIVE_UP_S if wait else STATUS_GIVE_UP_S
    connection = status_connection(_server(server), give_up_after)
    _log_retries(verbose)
    code = ExitCode.OK
    try:
        if wait:
            status, code = asyncio.run(
                wait_status(
                    connection,
                    upload_id,
                    wait_timeout,
                    (lambda s: None) if as_json else _print_status,
                )
            )
        else:
            status = asyncio.run(fetch_status(connection, upload_id))
            # The same outcome `--wait` (and `upload --wait`) ends with, once nothing can change.
            final = final_outcome(status)
            if final is not None:
                code = final.exit_code
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except GaveUp as error:
        hint = " (or wait longer: --give-up-after SECONDS)"
        raise _unreachable(connection.server, error, give_up_after, hint) from None
    except ApiError as error:
        if error.status == 404:
            typer.echo(f"no upload {upload_id} on {connection.server}", err=True)
            raise typer.Exit(ExitCode.REFUSED) from None
        raise _fail(error) from None
    except ClientError as error:
        raise _fail(error) from None
    if as_json:
        typer.echo(json.dumps(status, indent=1))
    elif wait:
        _print_outcome(status, upload_id, wait_timeout)
    else:
        _print_status(status)
        _print_details(status)
    raise typer.Exit(code)


def watch_command(
    folder: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder to watch"),
    server: str | None = ServerOption,
    service_level: str | None = typer.Option(None, "--service-level"),
    settle: float = typer.Option(
        30.0, "--settle", min=0.0, help="Seconds a study's files must stay unchanged"
    ),
    interval: float = typer.Option(5.0, "--interval", min=0.1, help="Seconds between scans"),
    parallel: int = typer.Option(4, "--parallel", min=1, max=32),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    stall_timeout: float = StallOption,
    verbose: bool = VerboseOption,
) -> None:
    """Upload each new study in FOLDER once its files have stopped changing (Ctrl-C stops)."""
    if service_level is not None and service_level not in SERVICE_LEVELS:
        typer.echo(f"--service-level must be one of {', '.join(SERVICE_LEVELS)}", err=True)
        raise typer.Exit(ExitCode.USAGE)
    # A watcher runs unattended for hours: it never gives up on an unreachable server.
    connection = Connection(_server(server), stall_timeout, float("inf"), parallel)
    _log_retries(verbose)
    reporter = QuietReporter() if quiet else RichReporter()
    options = UploadOptions(service_level=service_level, parallel=parallel)
    try:
        with reporter:
            asyncio.run(watch_folder(connection, folder, options, reporter, settle, interval))
    except KeyboardInterrupt:
        # Ctrl-C is how a watcher always stops, but scripts and service managers read 130 as
        # "interrupted" for every command (exit_codes.py), and 0 as "finished its work".
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except ClientError as error:
        raise _fail(error) from None


def register(app: typer.Typer) -> None:
    app.command("login")(login_command)
    app.command("upload")(upload_command)
    app.command("status")(status_command)
    app.command("watch")(watch_command)


__all__ = ["register"]
