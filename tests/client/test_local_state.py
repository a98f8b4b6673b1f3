"""The uploader's own files: private modes, atomic replacement, resume records."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

from relaypacs.client.credentials import CredentialStore, SavedSignIn
from relaypacs.client.files import read_json, write_json_private
from relaypacs.client.journal import KEY_LIFETIME_S, Journal, JournalEntry, JournalFile
from relaypacs.client.uploader import missing_by_file, parse_missing


def test_private_files_are_created_0600_in_a_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.json"

    write_json_private(path, {"a": 1})

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert read_json(path) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["journal.json"]  # no temp file left


def test_a_torn_journal_is_read_as_empty_rather_than_stopping_uploads(tmp_path: Path) -> None:
    (tmp_path / "journal.json").write_text('{"uploads": {"x": ')

    assert Journal(tmp_path).get("http://gw", "fingerprint") is None


def test_the_journal_finds_an_upload_by_server_and_exact_file_set(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    entry = JournalEntry(
        server="http://gw",
        study_instance_uid="1.2.3",
        fingerprint="abc",
        upload_id="u-1",
        upload_token="t-1",
        chunk_size=1024,
        expires_at=None,
        files=[JournalFile("f-1", "a.dcm", 10, 1, "/x/a.dcm|10|1")],
    )
    journal.save(entry)

    assert journal.get("http://gw/", "abc") == entry
    assert journal.get("http://other", "abc") is None
    assert journal.get("http://gw", "abd") is None
    assert journal.find_upload("u-1") == entry
    assert journal.uploaded_sources("http://gw") == set()
    entry.completed = True
    journal.save(entry)
    assert journal.uploaded_sources("http://gw") == {"/x/a.dcm|10|1"}


def test_a_study_start_keeps_its_idempotency_key_until_its_answer_is_recorded(
    tmp_path: Path,
) -> None:
    body = {"study": {"patient_name": "DOE^JANE"}, "files": [{"name": "a.dcm", "size": 10}]}
    key = Journal(tmp_path).idempotency_key("http://gw", "abc", body)

    # Another process (the run after a crash) gets the same key for the same request...
    assert uuid.UUID(key)
    assert Journal(tmp_path).idempotency_key("http://gw/", "abc", dict(body)) == key
    assert stat.S_IMODE((tmp_path / "journal.json").stat().st_mode) == 0o600
    # ...but not for another body, study or server.
    forced = Journal(tmp_path).idempotency_key("http://gw", "abc", {**body, "force_upload": True})
    assert forced != key
    assert Journal(tmp_path).idempotency_key("http://gw", "abd", body) != forced
    assert Journal(tmp_path).idempotency_key("http://other", "abc", body) != forced

    # Once the answer is in the journal, starting the study again is a new request.
    journal = Journal(tmp_path)
    journal.save(JournalEntry("http://gw", "1.2.3", "abc", "u-1", "t-1", 1024, None, files=[]))
    assert journal.idempotency_key("http://gw", "abc", body) not in (key, forced)


def test_an_idempotency_key_older_than_the_gateway_remembers_is_replaced(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path)
    key = journal.idempotency_key("http://gw", "abc", {"a": 1})
    data = read_json(tmp_path / "journal.json")
    data["idempotency_keys"]["http://gw|abc"]["created"] -= KEY_LIFETIME_S + 1
    write_json_private(tmp_path / "journal.json", data)

    assert journal.idempotency_key("http://gw", "abc", {"a": 1}) != key
    journal.forget_idempotency_key("http://gw", "abc")
    assert read_json(tmp_path / "journal.json")["idempotency_keys"] == {}


def test_a_new_sign_in_replaces_the_old_one_for_that_server_only(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    first = SavedSignIn("a", "refresh-1", "access-1", 0.0)
    store.save("http://one", first)
    store.save("http://two", SavedSignIn("b", "refresh-2", "access-2", 0.0))

    store.save("http://one/", SavedSignIn("a", "refresh-3", "access-3", 0.0))

    assert store.load("http://one") == SavedSignIn("a", "refresh-3", "access-3", 0.0)
    assert store.load("http://two") == SavedSignIn("b", "refresh-2", "access-2", 0.0)
    assert store.default_server() == "http://one"
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_missing_chunks_are_read_from_inclusive_ranges() -> None:
    assert parse_missing([[0, 2], [5, 5], [7, 8]]) == [0, 1, 2, 5, 7, 8]
    assert parse_missing([3, 1, 1]) == [1, 3]
    assert parse_missing(None) == []
    status = {"files": [{"file_id": "f", "missing_chunks": [[1, 3]]}, {"file_id": "g"}]}
    assert missing_by_file(status) == {"f": [1, 2, 3]}
