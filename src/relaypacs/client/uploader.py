"""One study, from `POST /uploads` to `complete` (and to `delivered` with ``--wait``).

Resume works at three levels: the journal names the session this exact set of files went to, the
server says which chunks it is missing, and only those are sent. A session the journal does not
name is never resumed: a 409 ``duplicate_study`` only says that the same patient, date and
modality were sent, and names, sizes and the declared metadata cannot prove that the chunks
already stored there are these files' bytes (another study of the same patient that day, or a
corrected file of the same size, would be mixed into what reaches the PACS). A study started
from another machine or a wiped state dir is therefore a duplicate like any other (``--force``).

A session the journal does name but that no run can finish is cancelled, never left to block
the next start of the study with ``duplicate_study`` until it expires: one whose files changed
under the run, and one of this study that a 409 names when its files now have another
fingerprint (moved, copied, touched or edited since).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from relaypacs.client.api import ApiError, ClientError, GatewayClient
from relaypacs.client.engine import (
    FilePlan,
    LocalFileChanged,
    UploadClosed,
    UploadGone,
    UploadToken,
    send_chunks,
)
from relaypacs.client.exit_codes import ExitCode
from relaypacs.client.journal import Journal, JournalEntry, JournalFile
from relaypacs.client.studies import Source, Study

RECEIVING_STATES = frozenset({"created", "receiving"})
DELIVERED_STATES = frozenset({"delivered"})
UNDELIVERED_STATES = frozenset(
    {"rejected", "failed", "partially_delivered", "cancelled", "expired"}
)
GONE_STATES = frozenset({"cancelled", "expired"})
# What the gateway's validation says of a file, or of a ZIP entry in the file's `problems`, that
# is not an instance to deliver and is no loss: a DICOMDIR, the media's index.
NOT_AN_INSTANCE = "skipped"
COMPLETE_ATTEMPTS = 5
# Cancelling an abandoned session is only tidying up: an unreachable gateway must not hold the
# run (or `watch`) for the hour an upload keeps trying; the session then ends when it expires.
ABANDON_CANCEL_S = 60.0

log = logging.getLogger("relaypacs.client")


class Reporter(Protocol):
    def study_started(self, study: Study, label: str, total: int, done: int) -> None: ...
    def study_bytes(self, study: Study, moved: int) -> None: ...
    def study_note(self, study: Study, text: str) -> None: ...
    def study_finished(self, study: Study, outcome: StudyOutcome) -> None: ...


@dataclass
class UploadOptions:
    service_level: str | None = None
    clinical_history: str | None = None
    force: bool = False
    parallel: int = 4
    chunk_size: int | None = None
    wait: bool = False
    wait_timeout: float = 3600.0
    poll_interval: float = 2.0
    # Asked on a 409 duplicate when not forced; None means "do not send it again".
    confirm_duplicate: Callable[[Study, dict[str, Any]], bool] | None = None


@dataclass(frozen=True)
class LeftOut:
    """A file (or ZIP entry) the gateway did not pass on to the PACS, and the server's reason."""

    name: str
    reason: str


def left_out_files(status: dict[str, Any]) -> list[LeftOut]:
    """What of the upload ``status`` will not reach the PACS: invalid files, bad ZIP entries and
    instances the PACS refused. A DICOMDIR (file or ZIP entry) is not among them."""
    left: list[LeftOut] = []
    names: dict[str, str] = {}
    for file in status.get("files", []) or []:
        if not isinstance(file, dict):
            continue
        name = str(file.get("name") or file.get("file_id"))
        names[str(file.get("file_id"))] = name
        problems = [p for p in file.get("problems") or [] if isinstance(p, dict)]
        for problem in problems:
            if problem.get("status") == NOT_AN_INSTANCE:
                continue
            entry = f"{name}/{problem['entry']}" if problem.get("entry") else name
            left.append(LeftOut(entry, str(problem.get("reason") or problem.get("status"))))
        if not problems and file.get("status") == "invalid":
            left.append(LeftOut(name, "invalid"))
    for instance in status.get("instances", []) or []:
        if not isinstance(instance, dict) or instance.get("forward_status") != "refused":
            continue
        name = names.get(str(instance.get("file_id")), str(instance.get("sop_instance_uid")))
        if instance.get("entry_name"):
            name = f"{name}/{instance['entry_name']}"
        left.append(LeftOut(name, str(instance.get("forward_reason") or "refused by the PACS")))
    return left


@dataclass(frozen=True)
class FinalOutcome:
    """How an upload session that can no longer change went, as ``--wait`` reports it."""

    exit_code: ExitCode
    message: str
    failure_reason: str | None
    left_out: list[LeftOut]


def final_outcome(status: dict[str, Any]) -> FinalOutcome | None:
    """The outcome of the upload ``status``; None while its state may still change."""
    state = str(status.get("state"))
    if state not in DELIVERED_STATES and state not in UNDELIVERED_STATES:
        return None
    # Even a delivered study may have had files left out (e.g. one truncated file).
    left_out = left_out_files(status)
    failure = status.get("failure_reason")
    reason = str(failure) if failure else None
    if state in UNDELIVERED_STATES:
        message = f"ended {state}" + (f": {reason}" if reason else "")
        return FinalOutcome(ExitCode.NOT_DELIVERED, message, reason, left_out)
    if left_out:
        count = len(left_out)
        message = f"delivered, but {count} file{'' if count == 1 else 's'} left out"
        return FinalOutcome(ExitCode.FILES_LEFT_OUT, message, reason, left_out)
    return FinalOutcome(ExitCode.OK, "delivered", reason, left_out)


@dataclass
class StudyOutcome:
    study_instance_uid: str
    files: int
    bytes_total: int
    exit_code: ExitCode = ExitCode.OK
    upload_id: str | None = None
    state: str | None = None
    message: str = ""
    resumed: bool = False
    bytes_needed: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    upload_token: str | None = field(default=None, repr=False)
    # Set from the final status with ``--wait``: why the study was not (all) delivered.
    failure_reason: str | None = None
    left_out: list[LeftOut] = field(default_factory=list)
    #: Our own unfinished session of this study that was cancelled so this one could start.
    replaced_upload_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "study_instance_uid": self.study_instance_uid,
            "upload_id": self.upload_id,
            "state": self.state,
            "exit_code": int(self.exit_code),
            "message": self.message,
            "files": self.files,
            "bytes_total": self.bytes_total,
            "bytes_needed": self.bytes_needed,
            "resumed": self.resumed,
            "seconds": round(self.seconds, 3),
            "failure_reason": self.failure_reason,
            "left_out": [{"name": f.name, "reason": f.reason} for f in self.left_out],
            "replaced_upload_id": self.replaced_upload_id,
        }


def study_label(study: Study) -> str:
    first = study.first
    parts = [first.patient_name.replace("^", " ").strip() or "(no name)", study.modality]
    if study.study_date:
        parts.append(study.study_date.isoformat())
    return " · ".join(parts)


def parse_missing(value: Any) -> list[int]:
    """Missing chunk indexes, given as indexes, ``[first, last]`` pairs, ``"a-b"`` or objects."""
    indexes: list[int] = []
    if not isinstance(value, list):
        return indexes
    for item in value:
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            indexes.append(item)
        elif isinstance(item, list | tuple) and len(item) == 2:
            indexes.extend(range(int(item[0]), int(item[1]) + 1))
        elif isinstance(item, str) and "-" in item:
            first, last = item.split("-", 1)
            indexes.extend(range(int(first), int(last) + 1))
        elif isinstance(item, str) and item.isdigit():
            indexes.append(int(item))
        elif isinstance(item, dict):
            low = item.get("first", item.get("start"))
            high = item.get("last", item.get("end", low))
            if isinstance(low, int) and isinstance(high, int):
                indexes.extend(range(low, high + 1))
    return sorted(set(indexes))


def missing_by_file(status: dict[str, Any]) -> dict[str, list[int]]:
    result: dict[str, list[int]] = {}
    for file in status.get("files", []) or []:
        if not isinstance(file, dict):
            continue
        file_id = str(file.get("file_id") or file.get("id"))
        for key in ("missing_chunks", "missing", "missing_chunk_indexes", "missing_ranges"):
            if key in file:
                result[file_id] = parse_missing(file[key])
                break
    return result


def _earlier_upload_id(problem: dict[str, Any]) -> str | None:
    for key in ("upload_id", "existing_upload_id", "duplicate_of", "earlier_upload_id"):
        value = problem.get(key)
        if isinstance(value, str) and value:
            return value
    duplicate = problem.get("duplicate") or problem.get("existing_upload")
    if isinstance(duplicate, dict):
        value = duplicate.get("upload_id") or duplicate.get("id")
        return str(value) if value else None
    return None


class StudyUploader:
    def __init__(
        self,
        client: GatewayClient,
        journal: Journal,
        options: UploadOptions,
        reporter: Reporter,
        spool_dir: Path,
    ) -> None:
        self.client = client
        self.journal = journal
        self.options = options
        self.reporter = reporter
        self.spool_dir = spool_dir

    async def upload(self, study: Study, force: bool | None = None) -> StudyOutcome:
        started = time.monotonic()
        outcome = StudyOutcome(study.study_instance_uid, len(study.instances), study.size)
        label = study_label(study)
        try:
            await self._upload(
                study, label, outcome, self.options.force if force is None else force
            )
        except ApiError as error:
            outcome.exit_code = ExitCode.REFUSED
            outcome.message = f"refused by the server: {error.code}: {error.detail}"
            outcome.details = error.body
        except LocalFileChanged as error:
            outcome.exit_code = ExitCode.ERROR
            outcome.message = str(error)
        finally:
            outcome.seconds = time.monotonic() - started
            self._clean_spool(study)
        if self._will_wait(outcome):
            # Not finished yet: the outcome that counts (and that --quiet must show when it is
            # bad) is only known after wait(), which reports it.
            where = f" (upload {outcome.upload_id})" if outcome.upload_id else ""
            state = f", {outcome.state}" if outcome.state else ""
            self.reporter.study_note(study, f"{outcome.message}{state}{where}")
        else:
            self.reporter.study_finished(study, outcome)
        return outcome

    def _will_wait(self, outcome: StudyOutcome) -> bool:
        return (
            self.options.wait and outcome.upload_id is not None and outcome.exit_code is ExitCode.OK
        )

    async def _upload(self, study: Study, label: str, outcome: StudyOutcome, force: bool) -> None:
        server = self.client.server
        entry = self.journal.get(server, study.fingerprint)
        if entry is not None and not _same_sources(entry, study):
            # Not these files (a journal of an older version, or edited by hand): what its
            # session holds cannot be shown to be their bytes, so as for any changed study the
            # journal names no session for them, and no run can finish that session.
            if entry.completed:
                self.journal.remove(entry)
            else:
                note = await self._abandon(entry, "starting again")
                self.reporter.study_note(study, f"the journal did not match these files; {note}")
            entry = None
        if entry is not None and entry.completed and not force:
            outcome.upload_id, outcome.resumed = entry.upload_id, True
            outcome.upload_token = entry.upload_token
            outcome.message = "already uploaded"
            self.reporter.study_started(study, label, study.size, study.size)
            return
        if entry is not None and entry.completed:
            entry = None
        for _ in range(3):
            status: dict[str, Any] | None = None
            if entry is not None:
                status = await self._status_or_none(entry.upload_id, entry.upload_token)
                if status is None or status.get("state") in GONE_STATES:
                    self.journal.remove(entry)
                    entry, status = None, None
                    # The gone session was ours: the duplicate check must not stop a new one.
                    force = True
            if entry is None:
                entry = await self._start(study, outcome, force)
                if entry is None:
                    return
            else:
                outcome.resumed = True
            outcome.upload_id, outcome.upload_token = entry.upload_id, entry.upload_token
            try:
                await self._send_and_complete(study, label, entry, status, outcome)
            except UploadGone as gone:
                self.reporter.study_note(study, f"session gone ({gone}); starting again")
                self.journal.remove(entry)
                entry = None
                # The previous attempt is ours: the server's duplicate check must not stop us.
                force = True
                continue
            except LocalFileChanged as changed:
                # The files are no longer what the session was started for: left receiving, it
                # would be the "duplicate" that refuses the next start of the changed files.
                outcome.exit_code = ExitCode.ERROR
                abandoned = await self._abandon(entry, "run again to send the files as they are")
                outcome.message = f"{changed}; {abandoned}"
                return
            entry.completed = True
            self.journal.save(entry)
            outcome.message = outcome.message or "uploaded"
            return
        outcome.exit_code = ExitCode.REFUSED
        outcome.message = "the server dropped the upload session three times"

    async def _status_or_none(
        self, upload_id: str, upload_token: str | None = None
    ) -> dict[str, Any] | None:
        try:
            return await self.client.get_upload(upload_id, upload_token)
        except ApiError as error:
            if error.status in (403, 404, 410):
                return None
            raise

    async def _start(self, study: Study, outcome: StudyOutcome, force: bool) -> JournalEntry | None:
        body: dict[str, Any] = {
            "study": study.metadata(self.options.service_level, self.options.clinical_history),
            "files": [{"name": i.source.name, "size": i.source.size} for i in study.instances],
        }
        if self.options.chunk_size:
            body["chunk_size"] = self.options.chunk_size
        if force:
            body["force_upload"] = True
        try:
            created = await self._create(study, body)
        except ApiError as error:
            if error.code != "duplicate_study":
                raise
            earlier = _earlier_upload_id(error.body)
            if earlier is not None and await self._cancel_own_unfinished(study, earlier, outcome):
                body["force_upload"] = True
                return self._record(study, await self._create(study, body))
            ask = self.options.confirm_duplicate
            if ask is None or not ask(study, error.body):
                outcome.exit_code = ExitCode.DUPLICATE_SKIPPED
                outcome.upload_id = _earlier_upload_id(error.body)
                outcome.message = (
                    "skipped: the server already has this study"
                    + (f" (upload {outcome.upload_id})" if outcome.upload_id else "")
                    + "; use --force to send it again"
                )
                self.reporter.study_note(study, outcome.message)
                return None
            body["force_upload"] = True
            created = await self._create(study, body)
        return self._record(study, created)

    async def _cancel_own_unfinished(
        self, study: Study, upload_id: str, outcome: StudyOutcome
    ) -> bool:
        """Cancel ``upload_id`` when it is our own unfinished session of this study, which the
        server counts as a duplicate although it holds only part of the study: its files were
        moved, copied, touched or edited since, so no run finds that session for them again."""
        entry = self.journal.find_upload(upload_id, self.client.server)
        if (
            entry is None
            or entry.completed
            # Another study of the same patient, day and modality: its session is still good.
            or entry.study_instance_uid != study.study_instance_uid
        ):
            return False
        status = await self._status_or_none(entry.upload_id, entry.upload_token)
        if status is None or status.get("state") not in RECEIVING_STATES:
            # Completed after all (only the answer was lost): the server has this study.
            return False
        try:
            await self.client.cancel_upload(entry.upload_id, entry.upload_token)
        except ApiError as error:
            # Completed or ended meanwhile: the duplicate is then one like any other.
            log.warning("could not cancel upload %s: %s", entry.upload_id, error)
            return False
        self.journal.remove(entry)
        outcome.replaced_upload_id = entry.upload_id
        self.reporter.study_note(
            study,
            f"cancelled our unfinished upload {entry.upload_id} of this study (its files moved "
            "or changed since); sending the study again",
        )
        return True

    async def _abandon(self, entry: JournalEntry, then: str) -> str:
        """Cancel ``entry``'s session, which no run can finish, and forget it; says how that
        went (``then``: what comes next, once it is cancelled). Best effort: a session left
        receiving still ends when it expires."""
        self.journal.remove(entry)
        try:
            async with asyncio.timeout(ABANDON_CANCEL_S):
                await self.client.cancel_upload(entry.upload_id, entry.upload_token)
        except (ClientError, TimeoutError) as error:
            reason = str(error) or "timed out"
            log.warning("could not cancel upload %s: %s", entry.upload_id, reason)
            return (
                f"upload {entry.upload_id} could not be cancelled on the server ({reason}): "
                "until it expires, a new upload of the study is refused as a duplicate"
            )
        return f"upload {entry.upload_id} was cancelled on the server; {then}"

    async def _create(self, study: Study, body: dict[str, Any]) -> dict[str, Any]:
        server = self.client.server
        key = self.journal.idempotency_key(server, study.fingerprint, body)
        try:
            return await self.client.create_upload(body, idempotency_key=key)
        except ApiError as error:
            if error.code != "idempotency_key_reused":
                raise
        # The gateway knows the key for another body (a journal copied from elsewhere?): the
        # request is a new one, so it gets a new key.
        self.journal.forget_idempotency_key(server, study.fingerprint)
        key = self.journal.idempotency_key(server, study.fingerprint, body)
        return await self.client.create_upload(body, idempotency_key=key)

    def _record(self, study: Study, created: dict[str, Any]) -> JournalEntry:
        files = created.get("files", [])
        if len(files) != len(study.instances):
            raise ApiError(502, {"code": "bad_response", "detail": "file list does not match"})
        entry = JournalEntry(
            server=self.client.server,
            study_instance_uid=study.study_instance_uid,
            fingerprint=study.fingerprint,
            upload_id=str(created["upload_id"]),
            upload_token=created.get("upload_token"),
            chunk_size=int(created["chunk_size"]),
            expires_at=created.get("expires_at"),
            files=[
                JournalFile(
                    file_id=str(f["file_id"]),
                    name=instance.source.name,
                    size=instance.source.size,
                    chunk_count=int(f.get("chunk_count") or 0),
                    source=instance.source.fingerprint,
                )
                for f, instance in zip(files, study.instances, strict=True)
            ],
        )
        self.journal.save(entry)
        return entry

    async def _send_and_complete(
        self,
        study: Study,
        label: str,
        entry: JournalEntry,
        status: dict[str, Any] | None,
        outcome: StudyOutcome,
    ) -> None:
        if status is not None and status.get("state") not in RECEIVING_STATES:
            # A previous run's `complete` reached the server but its answer did not reach us.
            outcome.state = str(status.get("state"))
            self.reporter.study_started(study, label, study.size, study.size)
            return
        paths = await asyncio.to_thread(self._materialize, study)
        # By what each file is, never by where it stands: the same files given in another order
        # make the same study, and a position would read one file's chunks from another.
        local = {
            i.source.fingerprint: (path, _scanned(i.source))
            for i, path in zip(study.instances, paths, strict=True)
        }

        def renewed(value: str) -> None:
            # Kept at once: a run stopped after this resumes with the token that works.
            entry.upload_token = outcome.upload_token = value
            self.journal.save(entry)

        token = UploadToken(self.client, entry.upload_id, entry.upload_token, renewed)
        for attempt in range(COMPLETE_ATTEMPTS):
            if status is None and attempt == 0 and not outcome.resumed:
                missing = {
                    f.file_id: list(range(f.chunk_count or _chunks(f.size, entry.chunk_size)))
                    for f in entry.files
                }
            else:
                status = status or await self.client.get_upload(entry.upload_id, entry.upload_token)
                if status.get("state") not in RECEIVING_STATES:
                    outcome.state = str(status.get("state"))
                    return
                missing = missing_by_file(status)
            plans: list[FilePlan] = []
            for f in entry.files:
                path, scanned = local[f.source]
                plans.append(FilePlan(f.file_id, path, f.size, missing.get(f.file_id, []), scanned))
            needed = sum(_chunk_bytes(p, i, entry.chunk_size) for p in plans for i in p.missing)
            if attempt == 0:
                outcome.bytes_needed = needed
                self.reporter.study_started(study, label, study.size, study.size - needed)
            try:
                # A status already told the token ended (a sign-out everywhere, a new password):
                # a new one now, rather than after every chunk in flight was refused with it.
                await token.renew_if_ended()
                await send_chunks(
                    self.client,
                    entry.upload_id,
                    token,
                    entry.chunk_size,
                    plans,
                    self.options.parallel,
                    lambda n: self.reporter.study_bytes(study, n),
                )
            except UploadClosed:
                status = await self.client.get_upload(entry.upload_id, entry.upload_token)
                state = str(status.get("state"))
                if state in GONE_STATES:
                    raise UploadGone(f"the upload is {state}") from None
                if state not in RECEIVING_STATES:
                    outcome.state = state
                    return
                continue
            try:
                result = await self.client.complete_upload(entry.upload_id, entry.upload_token)
            except ApiError as error:
                if error.code == "upload_incomplete":
                    status = None
                    continue
                if error.status in (404, 410):
                    raise UploadGone(error.detail) from error
                if error.status == 409:
                    # Already completing or past it: the status tells which.
                    status = await self.client.get_upload(entry.upload_id, entry.upload_token)
                    if status.get("state") not in RECEIVING_STATES:
                        outcome.state = str(status.get("state"))
                        return
                    continue
                raise
            outcome.state = str(result.get("state") or "assembling")
            return
        raise ApiError(409, {"code": "upload_incomplete", "detail": "chunks keep going missing"})

    async def wait(self, study: Study, outcome: StudyOutcome) -> None:
        """Follow the session until the PACS has it (``delivered``) or it ends otherwise, then
        report the study's final outcome (upload() left that to here)."""
        if not self._will_wait(outcome) or outcome.upload_id is None:
            return
        await self._follow(study, outcome, outcome.upload_id)
        self.reporter.study_finished(study, outcome)

    async def _follow(self, study: Study, outcome: StudyOutcome, upload_id: str) -> None:
        deadline = time.monotonic() + self.options.wait_timeout
        delay = self.options.poll_interval
        last_state = outcome.state  # upload() already said it
        while True:
            status = await self.client.get_upload(upload_id, outcome.upload_token)
            state = str(status.get("state"))
            outcome.state = state
            final = final_outcome(status)
            if final is not None:
                outcome.exit_code, outcome.message = final.exit_code, final.message
                outcome.failure_reason, outcome.left_out = final.failure_reason, final.left_out
                if final.exit_code is not ExitCode.OK:
                    outcome.details = status
                return
            if state != last_state:
                self.reporter.study_note(study, state)
                last_state = state
            if time.monotonic() > deadline:
                outcome.exit_code = ExitCode.WAIT_TIMED_OUT
                outcome.message = f"still {state} after {self.options.wait_timeout:.0f} s"
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 15.0)

    def _spool_for(self, study: Study) -> Path:
        return self.spool_dir / study.fingerprint

    def _materialize(self, study: Study) -> list[Path]:
        """Plain files are read in place; ZIP members are unpacked once, for random access."""
        paths: list[Path] = []
        for instance in study.instances:
            source: Source = instance.source
            if not source.in_zip:
                paths.append(source.path)
                continue
            # Named by what it is: a copy left by a killed run must not be taken for another
            # member that now stands at its place in the list.
            member = hashlib.sha256(source.fingerprint.encode()).hexdigest()[:32]
            target = self._spool_for(study) / f"{member}.dcm"
            if not target.exists() or target.stat().st_size != source.size:
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                partial = target.with_suffix(".part")
                with source.open() as src, partial.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
                partial.replace(target)
            paths.append(target)
        return paths

    def _clean_spool(self, study: Study) -> None:
        shutil.rmtree(self._spool_for(study), ignore_errors=True)


def _same_sources(entry: JournalEntry, study: Study) -> bool:
    return sorted(f.source for f in entry.files) == sorted(
        i.source.fingerprint for i in study.instances
    )


def _scanned(source: Source) -> tuple[int, int] | None:
    """What a read must find the file to be; None for a ZIP member, read from our own copy."""
    if source.in_zip or source.mtime_ns is None:
        return None
    return source.size, source.mtime_ns


def _chunks(size: int, chunk_size: int) -> int:
    return max(1, -(-size // chunk_size))


def _chunk_bytes(plan: FilePlan, index: int, chunk_size: int) -> int:
    return max(0, min(chunk_size, plan.size - index * chunk_size))
