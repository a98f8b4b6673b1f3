"""Finding DICOM files and grouping them into studies, on real files written with pydicom."""

from __future__ import annotations

import os
from pathlib import Path

from relaypacs.client.studies import scan
from tests.client.dicom_files import write_study, zip_folder


def test_files_are_grouped_into_one_upload_per_study_instance_uid(tmp_path: Path) -> None:
    first = write_study(tmp_path / "in" / "a", instances=3, pixel_bytes=4096, seed=1)
    second = write_study(tmp_path / "in" / "b" / "deeper", instances=2, pixel_bytes=4096, seed=2)

    result = scan([tmp_path / "in"])

    by_uid = {s.study_instance_uid: s for s in result.studies}
    assert set(by_uid) == {first.study_instance_uid, second.study_instance_uid}
    assert len(by_uid[first.study_instance_uid].instances) == 3
    names = sorted(i.source.name for i in by_uid[second.study_instance_uid].instances)
    assert names == ["b/deeper/IM00001.dcm", "b/deeper/IM00002.dcm"]
    assert result.skipped == []


def test_study_metadata_comes_from_the_headers(tmp_path: Path) -> None:
    write_study(
        tmp_path,
        instances=2,
        pixel_bytes=4096,
        patient_name="DOE^JANE",
        patient_id="P-77",
        modality="MR",
        study_date="20250317",
    )

    (study,) = scan([tmp_path]).studies
    metadata = study.metadata("stat", "headache for 3 days")

    assert metadata == {
        "patient_name": "DOE^JANE",
        "patient_id": "P-77",
        "study_date": "2025-03-17",
        "modality": "MR",
        "study_description": "RESILIENCE TEST",
        "service_level": "stat",
        "clinical_history": "headache for 3 days",
    }


def test_non_dicom_files_are_skipped_and_listed_with_a_reason(tmp_path: Path) -> None:
    write_study(tmp_path, instances=1, pixel_bytes=4096)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "empty.dcm").write_bytes(b"")
    (tmp_path / "garbage.dcm").write_bytes(os.urandom(3000))

    result = scan([tmp_path, tmp_path / "missing-folder"])

    assert len(result.studies) == 1
    reasons = {s.name.rsplit("/", 1)[-1]: s.reason for s in result.skipped}
    assert set(reasons) == {"notes.txt", "empty.dcm", "garbage.dcm", "missing-folder"}
    assert reasons["empty.dcm"] == "empty file"
    assert reasons["notes.txt"].startswith("not")
    assert reasons["missing-folder"] == "no such file or folder"


def test_zip_members_are_read_as_instances(tmp_path: Path) -> None:
    study = write_study(tmp_path / "cd", instances=3, pixel_bytes=4096)
    (tmp_path / "cd" / "README.TXT").write_text("burnt by the CD writer")
    archive = zip_folder(tmp_path / "cd", tmp_path / "export.zip")

    result = scan([archive])

    (found,) = result.studies
    assert found.study_instance_uid == study.study_instance_uid
    assert sorted(i.source.name for i in found.instances) == [
        "export.zip/IM00001.dcm",
        "export.zip/IM00002.dcm",
        "export.zip/IM00003.dcm",
    ]
    assert [s.name for s in result.skipped] == ["export.zip/README.TXT"]


def test_a_changed_file_changes_the_study_fingerprint(tmp_path: Path) -> None:
    study = write_study(tmp_path, instances=2, pixel_bytes=4096)
    before = scan([tmp_path]).studies[0].fingerprint

    with study.files[0].open("ab") as f:
        f.write(b"\0\0")
    after = scan([tmp_path]).studies[0].fingerprint

    assert before != after


def test_the_same_instance_given_twice_is_sent_once(tmp_path: Path) -> None:
    study = write_study(tmp_path / "a", instances=1, pixel_bytes=4096)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "copy.dcm").write_bytes(study.files[0].read_bytes())

    result = scan([tmp_path])

    assert len(result.studies[0].instances) == 1
    assert [s.reason for s in result.skipped] == ["same SOP Instance UID given twice"]
