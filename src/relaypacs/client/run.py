"""Whole runs of the uploader: sign in, upload paths, show a session's status."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relaypacs.client.api import ApiError, GatewayClient, GaveUp, NotSignedIn, RetryPolicy
from relaypacs.client.credentials import CredentialStore
from relaypacs.client.exit_codes import ExitCode, worst
from relaypacs.client.files import state_dir
from relaypacs.client.journal import Journal
from relaypacs.client.progress import QuietReporter
from relaypacs.client.studies import ScanResult, Study, scan
from relaypacs.client.uploader import (
    StudyOutcome,
    StudyUploader,
    UploadOptions,
    final_outcome,
)

TOTP_CODES = frozenset({"totp_required", "invalid_totp"})
# Someone is waiting at the prompt: an unreachable server is reported after this long, not after
# the hour an unattended upload keeps trying. It also bounds one attempt (connect, the answer), so
# a slow sign-in is not abandoned and re-sent early, each re-send counting as a failed attempt.
LOGIN_GIVE_UP_S = 30.0
# `status` is asked by someone (or a script) waiting for the answer, and asking again later loses
# nothing: an unreachable server is reported as soon as a sign-in would be, not after an hour.
STATUS_GIVE_UP_S = LOGIN_GIVE_UP_S
#: Unattended work (an upload, `status --wait`) keeps trying through an outage this long.
WAIT_GIVE_UP_S = 3600.0


@dataclass
class Connection:
    server: str
    stall_timeout: float = 60.0
    give_up_after: float = WAIT_GIVE_UP_S
    parallel: int = 4

    def client(self, credentials: CredentialStore | None = None) -> GatewayClient:
        return GatewayClient(
            self.server,
            credentials=credentials if credentials is not None else CredentialStore(),
            stall_timeout=self.stall_timeout,
            connections=self.parallel + 2,
            retry=RetryPolicy(give_up_after=self.give_up_after),
        )


def login_connection(server: str) -> Connection:
    return Connection(server, stall_timeout=LOGIN_GIVE_UP_S, give_up_after=LOGIN_GIVE_UP_S)


def status_connection(server: str, give_up_after: float) -> Connection:
    # A server that drops packets (rather than refusing) would otherwise hold the first connect
    # for the whole stall timeout, past the give-up the user asked for. Asking for a status
    # again costs nothing, so a slow answer may be abandoned and asked for again.
    stall_timeout = min(Connection.stall_timeout, give_up_after)
    return Connection(server, stall_timeout=stall_timeout, give_up_after=give_up_after)


async def login(
    connection: Connection,
    username: str,
    password: str,
    ask_totp: Callable[[], str] | None,
    totp_code: str | None = None,
) -> bool:
    """Sign in and save the tokens; True when the server asks for a new password first."""
    async with connection.client() as client:
        try:
            await client.login(username, password, totp_code)
        except ApiError as error:
            if error.code != "totp_required" or ask_totp is None or totp_code is not None:
                raise
            await client.login(username, password, ask_totp())
        return client.must_change_password


@dataclass
class UploadRun:
    outcomes: list[StudyOutcome]
    scan: ScanResult
    exit_code: ExitCode
    bytes_sent: int
    bytes_resent: int
    retries: int

    def summary(self) -> dict[str, Any]:
        return {
            "bytes_sent": self.bytes_sent,
            "bytes_resent": self.bytes_resent,
            "retries": self.retries,
        }


async def upload_studies(
    connection: Connection,
    studies: list[Study],
    options: UploadOptions,
    reporter: QuietReporter,
    force_for: Callable[[Study], bool] | None = None,
) -> tuple[list[StudyOutcome], dict[str, int]]:
    journal = Journal()
    outcomes: list[StudyOutcome] = []
    async with connection.client() as client:
        uploader = StudyUploader(client, journal, options, reporter, state_dir() / "spool")
        for study in studies:
            force = force_for(study) if force_for is not None else None
            outcomes.append(await uploader.upload(study, force=force))
        if options.wait:
            # Every study is sent first; then all are followed at once.
            await asyncio.gather(
                *(uploader.wait(s, o) for s, o in zip(studies, outcomes, strict=True))
            )
        stats = {
            "bytes_sent": client.stats.sent,
            "bytes_resent": client.stats.resent,
            "retries": client.stats.retries,
        }
    return outcomes, stats


async def upload_paths(
    connection: Connection,
    paths: list[Path],
    options: UploadOptions,
    reporter: QuietReporter,
) -> UploadRun:
    result = await asyncio.to_thread(scan, paths)
    reporter.skipped(result.skipped)
    if not result.studies:
        return UploadRun([], result, ExitCode.NOTHING_TO_UPLOAD, 0, 0, 0)
    total = sum(s.size for s in result.studies)
    files = sum(len(s.instances) for s in result.studies)
    reporter.note(
        f"{len(result.studies)} stud{'y' if len(result.studies) == 1 else 'ies'}, "
        f"{files} files, {total / 1048576:.1f} MiB"
    )
    outcomes, stats = await upload_studies(connection, result.studies, options, reporter)
    return UploadRun(
        outcomes,
        result,
        worst([o.exit_code for o in outcomes]),
        stats["bytes_sent"],
        stats["bytes_resent"],
        stats["retries"],
    )


def exit_code_for(error: BaseException) -> ExitCode:
    if isinstance(error, NotSignedIn):
        return ExitCode.NOT_SIGNED_IN
    if isinstance(error, GaveUp):
        return ExitCode.GAVE_UP
    if isinstance(error, ApiError):
        return ExitCode.NOT_SIGNED_IN if error.status == 401 else ExitCode.REFUSED
    return ExitCode.ERROR


def _journal_token(upload_id: str) -> str | None:
    """An upload this user started from here can be asked about with its own token."""
    entry = Journal().find_upload(upload_id)
    return entry.upload_token if entry is not None else None


async def fetch_status(connection: Connection, upload_id: str) -> dict[str, Any]:
    async with connection.client() as client:
        return await client.get_upload(upload_id, _journal_token(upload_id))


async def wait_status(
    connection: Connection,
    upload_id: str,
    wait_timeout: float,
    on_state: Callable[[dict[str, Any]], None],
    poll_interval: float = 2.0,
) -> tuple[dict[str, Any], ExitCode]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_timeout
    delay = poll_interval
    last = None
    token = _journal_token(upload_id)
    async with connection.client() as client:
        while True:
            status = await client.get_upload(upload_id, token)
            state = status.get("state")
            if state != last:
                on_state(status)
                last = state
            final = final_outcome(status)
            if final is not None:
                return status, final.exit_code
            if loop.time() > deadline:
                return status, ExitCode.WAIT_TIMED_OUT
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 15.0)
