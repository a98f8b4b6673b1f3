"""The local archive destination (the embedded default when no PACS is configured)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from relaypacs.pacs.destination import InstanceOutcome
from relaypacs.pacs.destinations.archive import ArchiveDestination
from relaypacs.pacs.exceptions import InstanceIntegrityError
from tests.pacs.conftest import dicom_bytes, stow_instance


async def test_archive_files_instances_by_study_and_series_byte_for_byte(tmp_path: Path) -> None:
    archive = ArchiveDestination(tmp_path / "archive")
    study_uid, series_a, series_b = generate_uid(), generate_uid(), generate_uid()
    files = [
        (series, *dicom_bytes(study_uid, series_uid=series))
        for series in (series_a, series_a, series_b)
    ]
    instances = [
        stow_instance(uid, data, study_uid=study_uid, series_uid=series)
        for series, uid, data in files
    ]
    result = await archive.store_instances(instances)
    assert [r.outcome for r in result.instances] == [InstanceOutcome.stored] * 3
    for series, uid, data in files:
        path = tmp_path / "archive" / study_uid / series / f"{uid}.dcm"
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert await archive.count_instances(study_uid) == 3
    assert await archive.count_instances(generate_uid()) == 0
    # Stored again (a retry): still one file each, no temporaries left behind.
    await archive.store_instances(instances)
    assert await archive.count_instances(study_uid) == 3
    assert not list((tmp_path / "archive").rglob("*.part"))
    await archive.ping()


async def test_archive_refuses_uids_that_would_escape_its_directory(tmp_path: Path) -> None:
    archive = ArchiveDestination(tmp_path / "archive")
    uid, data = dicom_bytes("1.2.3")
    result = await archive.store_instances(
        [stow_instance(uid, data, study_uid="../../etc", series_uid="1.2")]
    )
    (refused,) = result.instances
    assert refused.outcome is InstanceOutcome.refused
    assert refused.reason == "a UID is not a valid DICOM UID"
    assert not (tmp_path / "etc").exists()
    assert list((tmp_path / "archive").rglob("*")) == []


async def test_archive_never_files_a_copy_that_does_not_match_its_sha256(tmp_path: Path) -> None:
    archive = ArchiveDestination(tmp_path / "archive")
    study_uid = generate_uid()
    uid, data = dicom_bytes(study_uid)
    damaged = stow_instance(uid, data, study_uid=study_uid, sha256="0" * 64)
    with pytest.raises(InstanceIntegrityError):
        await archive.store_instances([damaged])
    assert not [p for p in (tmp_path / "archive").rglob("*") if p.is_file()]
