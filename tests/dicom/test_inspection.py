"""inspect_instance over every file pydicom ships (valid, broken, truncated, DICOMDIR, junk)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_files

from relaypacs.dicom.validation import Verdict, inspect_instance

SHIPPED = sorted({p for p in get_testdata_files() if Path(p).is_file()})

#: Files that must be refused, and a word the reason must contain.
REFUSED = {
    "MR_truncated.dcm": "truncated",
    "rtplan_truncated.dcm": "truncated",
    "meta_missing_tsyntax.dcm": "transfer syntax",
    "no_meta.dcm": "not DICOM",
    "ExplVR_BigEndNoMeta.dcm": "not DICOM",
    "ExplVR_LitEndNoMeta.dcm": "not DICOM",
    "README.txt": "not DICOM",
    "crayons.icc": "not DICOM",
    "zipMR.gz": "not DICOM",
    "test1.json": "not DICOM",
    "rtplan.dump": "not DICOM",
    "badVR.dcm": "pixel data",
    "UN_sequence.dcm": "missing",
    "priv_SQ.dcm": "missing",
    "nested_priv_SQ.dcm": "missing",
    "empty_charset_LEI.dcm": "missing",
    "no_meta_group_length.dcm": "missing",
}
VALID = {
    "CT_small.dcm",
    "MR_small.dcm",
    "JPEG2000.dcm",
    "MR_small_RLE.dcm",
    "rtdose.dcm",
    "ExplVR_BigEnd.dcm",
    "MR_small_implicit.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "waveform_ecg.dcm",
    "693_J2KI.dcm",
    "emri_small.dcm",
    "liver_1frame.dcm",
    "SC_rgb_jpeg.dcm",
}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: Path(p).name)
def test_every_shipped_file_gets_a_verdict_without_crashing(path: str) -> None:
    name = Path(path).name
    result = inspect_instance(Path(path))
    if name in REFUSED:
        assert result.verdict is Verdict.invalid
        assert result.reason is not None
        assert REFUSED[name] in result.reason
    elif name.startswith("DICOMDIR"):
        assert result.verdict is Verdict.skipped
    elif name in VALID:
        assert result.verdict is Verdict.instance, result.reason
        assert result.header is not None
        assert result.header.sop_instance_uid
    else:
        assert result.verdict in set(Verdict)


def test_truncating_a_valid_file_anywhere_after_the_header_is_detected(tmp_path: Path) -> None:
    source = Path(min(p for p in SHIPPED if Path(p).name == "CT_small.dcm")).read_bytes()
    for cut in (len(source) - 1, len(source) - 1000, len(source) // 2, 2000, 700):
        target = tmp_path / f"cut{cut}.dcm"
        target.write_bytes(source[:cut])
        assert inspect_instance(target).verdict is Verdict.invalid, cut


def test_encapsulated_pixel_data_without_its_delimiter_is_truncated(tmp_path: Path) -> None:
    source = Path(min(p for p in SHIPPED if Path(p).name == "JPEG2000.dcm")).read_bytes()
    target = tmp_path / "cut.dcm"
    target.write_bytes(source[:-8])  # drop the sequence delimitation item
    result = inspect_instance(target)
    assert result.verdict is Verdict.invalid
    assert result.reason is not None
    assert "delimiter" in result.reason


def _instance(path: Path, transfer_syntax: str, **elements: object) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    dataset = Dataset()
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.Modality = "OT"
    for keyword, value in elements.items():
        setattr(dataset, keyword, value)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.TransferSyntaxUID = transfer_syntax
    dataset.save_as(path, enforce_file_format=True)
    return path


def _peak_bytes(path: Path) -> tuple[Verdict, str | None, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        result = inspect_instance(path)
        return result.verdict, result.reason, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_deflated_data_set_that_inflates_too_far_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from relaypacs.dicom import validation

    # A few kilobytes on disk, 16 MiB once inflated (pydicom inflates all of it, in memory).
    monkeypatch.setattr(validation, "MAX_INFLATED_BYTES", 4 * 1024 * 1024)
    bomb = _instance(
        tmp_path / "bomb.dcm", DeflatedExplicitVRLittleEndian, EncapsulatedDocument=bytes(16 << 20)
    )
    assert bomb.stat().st_size < 100_000
    verdict, reason, peak = _peak_bytes(bomb)
    assert verdict is Verdict.invalid
    assert reason is not None
    assert "inflates past" in reason
    assert peak < 8 * 1024 * 1024  # pydicom itself would hold all 16 MiB
    # The same kind of file, small enough, is still an instance.
    small = _instance(
        tmp_path / "small.dcm", DeflatedExplicitVRLittleEndian, EncapsulatedDocument=bytes(1 << 20)
    )
    assert inspect_instance(small).verdict is Verdict.instance


def test_a_header_of_too_many_items_is_refused_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    from relaypacs.dicom import validation

    monkeypatch.setattr(validation, "MAX_HEADER_ELEMENTS", 1000)
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        many = Sequence([Dataset() for _ in range(1200)])
        bomb = _instance(tmp_path / "many.dcm", syntax, ReferencedImageSequence=many)
        result = inspect_instance(bomb)
        assert result.verdict is Verdict.invalid, syntax
        assert result.reason is not None
        assert "too large to parse" in result.reason
        fewer = Sequence([Dataset() for _ in range(500)])
        fine = _instance(tmp_path / "fine.dcm", syntax, ReferencedImageSequence=fewer)
        assert inspect_instance(fine).verdict is Verdict.instance, syntax
