"""Is this file a usable DICOM instance? Blocking: call through a worker thread.

The checks follow PS3.10 (media storage file format) and PS3.5 (data structures and encoding):

* a Part 10 file (128-byte preamble + ``DICM``, PS3.10 §7.1) with a File Meta Information group, or
  a bare data set in the default transfer syntax, implicit VR little endian (PS3.5 §A.1);
* a transfer syntax pydicom knows (PS3.5 §10, PS3.6 Annex A);
* the identifying UIDs: SOP Class (0008,0016), SOP Instance (0008,0018), Study Instance
  (0020,000D) and Series Instance (0020,000E);
* a complete structure: every element's value lies inside the file and every undefined-length
  sequence or encapsulated pixel data ends with its delimiter (PS3.5 §7.5) — pydicom itself reads
  truncated sequences silently, so this walk is ours;
* for native (uncompressed) pixel data, a value at least Rows * Columns * Samples per Pixel *
  Bits Allocated / 8 * Number of Frames long (PS3.5 §8.1.1).

A DICOMDIR (Media Storage Directory Storage, PS3.10 §8) is an index, not an instance: it is
reported as ``skipped``. The patient name and other header values are returned only for comparison
with what the user declared; they are never logged.
"""

from __future__ import annotations

import re
import struct
import tempfile
import zlib
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
import pydicom.config
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

# We run our own checks and report them per file; pydicom's per-value validation warnings would
# only add noise (and would be raised as errors in the test suite).
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

MEDIA_STORAGE_DIRECTORY_STORAGE = "1.2.840.10008.1.3.10"
#: A UID is at most 64 characters of digits and dots (PS3.5 §9.1).
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
#: Values longer than this stay on disk while the header is parsed.
_DEFER_SIZE = "256 KB"
_PIXEL_DATA = 0x7FE00010
_ITEM = 0xFFFEE000
_ITEM_DELIMITER = 0xFFFEE00D
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
# Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 §7.1.2).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_MAX_DEPTH = 32
#: pydicom keeps every data element (and sequence item) of the header as a Python object, about
#: a kilobyte each: a file of a million tiny items takes over a gigabyte to parse. Real headers
#: stay far below this (an enhanced multi-frame has some tens of elements per frame).
MAX_HEADER_ELEMENTS = 300_000
#: pydicom inflates a deflated data set whole, in memory, pixel data included.
MAX_INFLATED_BYTES = 128 * 1024 * 1024
_TRANSFER_SYNTAX_TAG = (0x0002, 0x0010)


class Verdict(StrEnum):
    instance = "instance"
    skipped = "skipped"
    invalid = "invalid"


@dataclass(frozen=True)
class InstanceHeader:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    modality: str | None
    series_number: int | None
    instance_number: int | None
    number_of_frames: int | None
    # For comparison with the declared study only (never stored, never logged).
    patient_name: str | None
    study_date: date | None


@dataclass(frozen=True)
class Inspection:
    verdict: Verdict
    reason: str | None = None
    header: InstanceHeader | None = None

    @classmethod
    def invalid(cls, reason: str) -> Inspection:
        return cls(Verdict.invalid, reason)


class _Truncated(Exception):
    pass


class _TooCostly(Exception):
    """Parsing the file would take more memory than any real instance needs."""


class _Budget:
    """How many more data elements and items a walk may meet."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _TooCostly(f"more than {MAX_HEADER_ELEMENTS} data elements and items")


@dataclass
class _PixelElement:
    value_offset: int
    length: int


def inspect_instance(path: Path) -> Inspection:
    """Blocking. Decide whether ``path`` holds one valid DICOM instance."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(132)
        part10 = len(head) == 132 and head[128:132] == b"DICM"
        if not part10 and not _looks_like_implicit_little_endian(head, size):
            return Inspection.invalid(
                "not DICOM: no 'DICM' preamble and not an implicit VR little endian data set"
            )
        # Before pydicom parses anything: a small hostile file must not take gigabytes.
        costly = _parsing_cost_problem(handle, part10, size)
        if costly:
            return Inspection.invalid(costly)
        handle.seek(0)
        try:
            dataset = pydicom.dcmread(
                handle, stop_before_pixels=True, defer_size=_DEFER_SIZE, force=not part10
            )
        except (InvalidDicomError, EOFError, OSError) as exc:
            return Inspection.invalid(f"unreadable DICOM ({type(exc).__name__})")
        except Exception as exc:  # pydicom raises many kinds on malformed input
            return Inspection.invalid(f"unreadable DICOM ({type(exc).__name__})")

        sop_class = _text(dataset.get("SOPClassUID")) or _text(
            dataset.file_meta.get("MediaStorageSOPClassUID") if part10 else None
        )
        if sop_class == MEDIA_STORAGE_DIRECTORY_STORAGE:
            return Inspection(Verdict.skipped, "DICOMDIR (a media index, not an instance)")

        if part10:
            transfer_syntax = _text(dataset.file_meta.get("TransferSyntaxUID"))
            if not transfer_syntax:
                return Inspection.invalid("transfer syntax missing from the file meta information")
        else:
            transfer_syntax = ImplicitVRLittleEndian
        uid = UID(transfer_syntax)
        if not uid.is_transfer_syntax:
            return Inspection.invalid("unknown transfer syntax")

        missing = [
            keyword
            for keyword in (
                "SOPClassUID",
                "SOPInstanceUID",
                "StudyInstanceUID",
                "SeriesInstanceUID",
            )
            if not _is_uid(_text(dataset.get(keyword)))
        ]
        if missing:
            return Inspection.invalid("missing or malformed " + ", ".join(missing))

        pixel: _PixelElement | None = None
        if uid != DeflatedExplicitVRLittleEndian:
            start = _meta_end(handle) if part10 else 0
            try:
                pixel = _walk_structure(
                    handle, start, size, implicit=uid.is_implicit_VR, little=uid.is_little_endian
                )
            except _Truncated as exc:
                return Inspection.invalid(f"truncated or malformed: {exc}")
            if pixel is not None and not uid.is_encapsulated:
                problem = _native_pixel_problem(dataset, pixel)
                if problem:
                    return Inspection.invalid(problem)
            if pixel is not None and uid.is_encapsulated and pixel.length != _UNDEFINED:
                return Inspection.invalid("compressed pixel data is not encapsulated")

    header = InstanceHeader(
        sop_class_uid=_text(dataset.SOPClassUID),
        sop_instance_uid=_text(dataset.SOPInstanceUID),
        study_instance_uid=_text(dataset.StudyInstanceUID),
        series_instance_uid=_text(dataset.SeriesInstanceUID),
        transfer_syntax_uid=str(uid),
        modality=_text(dataset.get("Modality")) or None,
        series_number=_integer(dataset.get("SeriesNumber")),
        instance_number=_integer(dataset.get("InstanceNumber")),
        number_of_frames=_integer(dataset.get("NumberOfFrames")),
        patient_name=_text(dataset.get("PatientName")) or None,
        study_date=_date(dataset.get("StudyDate")),
    )
    return Inspection(Verdict.instance, header=header)


def _looks_like_implicit_little_endian(head: bytes, size: int) -> bool:
    if len(head) < 8:
        return False
    group, _element, length = struct.unpack("<HHL", head[:8])
    # A bare data set starts with group 0008 (identification); an explicit VR would put two
    # upper-case letters where implicit VR has the low bytes of the length.
    looks_explicit = head[4:6].isalpha() and head[4:6].isupper()
    return group == 0x0008 and not looks_explicit and length < size


def _parsing_cost_problem(handle: BinaryIO, part10: bool, size: int) -> str | None:
    """Why pydicom must not parse this file (too many elements, or a deflated data set that
    inflates too far), or None. Malformed structure is left to the checks after parsing."""
    try:
        start = _meta_end(handle) if part10 else 0
        syntax = _meta_transfer_syntax(handle) if part10 else ImplicitVRLittleEndian
        if syntax != DeflatedExplicitVRLittleEndian:
            uid = UID(syntax)
            implicit = uid.is_implicit_VR if uid.is_transfer_syntax else False
            little = uid.is_little_endian if uid.is_transfer_syntax else True
            _walk_structure(
                handle,
                start,
                size,
                implicit=implicit,
                little=little,
                budget=_Budget(MAX_HEADER_ELEMENTS),
            )
            return None
        with tempfile.TemporaryFile() as inflated:
            inflated_size = _inflate(handle, start, inflated)
            _walk_structure(
                inflated,
                0,
                inflated_size,
                implicit=False,
                little=True,
                budget=_Budget(MAX_HEADER_ELEMENTS),
            )
    except _TooCostly as exc:
        return f"too large to parse safely: {exc}"
    except (_Truncated, zlib.error, ValueError):
        return None
    return None


def _inflate(handle: BinaryIO, start: int, into: BinaryIO) -> int:
    """Inflate a deflated data set into ``into``, at most :data:`MAX_INFLATED_BYTES`."""
    handle.seek(start)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    while not inflater.eof and (block := handle.read(1024 * 1024)):
        pending = block
        # Bounded output per call: a small input may inflate a thousandfold. Whatever follows
        # the end of the stream (a padding byte) is not inflated.
        while pending and not inflater.eof:
            out = inflater.decompress(pending, 1024 * 1024)
            pending = inflater.unconsumed_tail
            total += len(out)
            if total > MAX_INFLATED_BYTES:
                raise _TooCostly(f"the deflated data set inflates past {MAX_INFLATED_BYTES} bytes")
            into.write(out)
    into.write(inflater.flush())
    return into.tell()


def _meta_transfer_syntax(handle: BinaryIO) -> str:
    """The Transfer Syntax UID of the File Meta group, read without pydicom ("" if none)."""
    handle.seek(132)
    while True:
        header = handle.read(8)
        if len(header) < 8:
            return ""
        group, element = struct.unpack("<HH", header[:4])
        if group != 0x0002:
            return ""
        vr = header[4:6]
        if vr in _LONG_VRS:
            extra = handle.read(4)
            if len(extra) < 4:
                return ""
            length = struct.unpack("<L", extra)[0]
        else:
            length = struct.unpack("<H", header[6:8])[0]
        if (group, element) == _TRANSFER_SYNTAX_TAG:
            return handle.read(min(length, 64)).rstrip(b"\x00 ").decode("ascii", "replace")
        handle.seek(length, 1)


def _meta_end(handle: BinaryIO) -> int:
    """Offset of the first data set element after the File Meta group (always explicit VR LE)."""
    handle.seek(132)
    while True:
        position = handle.tell()
        header = handle.read(8)
        if len(header) < 8:
            raise _Truncated("file meta information")
        group = struct.unpack("<H", header[:2])[0]
        if group != 0x0002:
            return position
        vr = header[4:6]
        if vr in _LONG_VRS:
            extra = handle.read(4)
            if len(extra) < 4:
                raise _Truncated("file meta information")
            length = struct.unpack("<L", extra)[0]
        else:
            length = struct.unpack("<H", header[6:8])[0]
        handle.seek(length, 1)


def _walk_structure(
    handle: BinaryIO,
    start: int,
    end: int,
    *,
    implicit: bool,
    little: bool,
    budget: _Budget | None = None,
) -> _PixelElement | None:
    """Walk every element from ``start`` to the end of the file without reading values.

    Returns where the top-level Pixel Data value is, if any. Raises :class:`_Truncated` when an
    element runs past the end or an undefined-length value never ends.
    """
    handle.seek(start)
    if not implicit:
        # Like pydicom, accept a data set that is implicit VR despite an explicit transfer
        # syntax (a common writer bug): the first element decides.
        first = handle.read(6)
        implicit = len(first) == 6 and not (first[4:6].isalpha() and first[4:6].isupper())
        handle.seek(start)
    found: list[_PixelElement] = []
    _walk_elements(handle, end, implicit, little, 0, found, budget, until_item_end=False)
    return found[0] if found else None


def _walk_elements(
    handle: BinaryIO,
    end: int,
    implicit: bool,
    little: bool,
    depth: int,
    found: list[_PixelElement],
    budget: _Budget | None,
    *,
    until_item_end: bool,
) -> None:
    if depth > _MAX_DEPTH:
        raise _Truncated("sequences nested too deeply")
    order = "<" if little else ">"
    while handle.tell() < end:
        header = handle.read(8)
        if len(header) < 8:
            raise _Truncated("element header cut off")
        if budget is not None:
            budget.spend()
        group, element = struct.unpack(order + "HH", header[:4])
        tag = (group << 16) | element
        if tag == _ITEM_DELIMITER:
            if until_item_end:
                return
            raise _Truncated("unexpected item delimiter")
        if tag in (_ITEM, _SEQUENCE_DELIMITER):
            raise _Truncated("unexpected item tag")
        vr = None
        if implicit:
            length = struct.unpack(order + "L", header[4:8])[0]
        else:
            vr = header[4:6]
            if vr in _LONG_VRS:
                extra = handle.read(4)
                if len(extra) < 4:
                    raise _Truncated("element header cut off")
                length = struct.unpack(order + "L", extra)[0]
            elif vr.isalpha() and vr.isupper():
                length = struct.unpack(order + "H", header[6:8])[0]
            else:
                raise _Truncated("invalid value representation")
        value_offset = handle.tell()
        if tag == _PIXEL_DATA and depth == 0:
            found.append(_PixelElement(value_offset, length))
        if length == _UNDEFINED:
            # An undefined-length UN holds implicit VR little endian content (PS3.5 §6.2.2).
            content_implicit = implicit or vr == b"UN"
            content_little = little or vr == b"UN"
            _walk_items(handle, end, content_implicit, content_little, depth + 1, found, budget)
            continue
        if value_offset + length > end:
            raise _Truncated("element value runs past the end of the file")
        if budget is not None and length and _is_sequence(tag, vr):
            # Counted too: pydicom parses every item of a sequence, whatever its length form.
            _walk_defined_items(handle, value_offset + length, implicit, little, depth + 1, budget)
            handle.seek(value_offset + length)
            continue
        handle.seek(length, 1)
    if until_item_end:
        raise _Truncated("item without its delimiter")


def _walk_items(
    handle: BinaryIO,
    end: int,
    implicit: bool,
    little: bool,
    depth: int,
    found: list[_PixelElement],
    budget: _Budget | None,
) -> None:
    """Items of an undefined-length sequence (or fragments of encapsulated pixel data)."""
    order = "<" if little else ">"
    while True:
        header = handle.read(8)
        if len(header) < 8:
            raise _Truncated("sequence without its delimiter")
        group, element, length = struct.unpack(order + "HHL", header)
        tag = (group << 16) | element
        if tag == _SEQUENCE_DELIMITER:
            return
        if tag != _ITEM:
            raise _Truncated("expected an item in a sequence")
        if budget is not None:
            budget.spend()
        if length == _UNDEFINED:
            _walk_elements(handle, end, implicit, little, depth, found, budget, until_item_end=True)
            continue
        if handle.tell() + length > end:
            raise _Truncated("item runs past the end of the file")
        handle.seek(length, 1)


def _is_sequence(tag: int, vr: bytes | None) -> bool:
    if vr is not None:
        return vr == b"SQ"
    # Implicit VR: pydicom takes the VR from its dictionary, so known sequences are parsed.
    return dictionary_has_tag(tag) and dictionary_VR(tag) == "SQ"


def _walk_defined_items(
    handle: BinaryIO, stop: int, implicit: bool, little: bool, depth: int, budget: _Budget
) -> None:
    """Items of a sequence of defined length, for counting (see :func:`_parsing_cost_problem`)."""
    if depth > _MAX_DEPTH:
        raise _Truncated("sequences nested too deeply")
    order = "<" if little else ">"
    found: list[_PixelElement] = []
    while handle.tell() < stop:
        header = handle.read(8)
        if len(header) < 8:
            raise _Truncated("sequence cut off")
        group, element, length = struct.unpack(order + "HHL", header)
        if (group << 16) | element != _ITEM:
            raise _Truncated("expected an item in a sequence")
        budget.spend()
        if length == _UNDEFINED:
            _walk_elements(
                handle, stop, implicit, little, depth, found, budget, until_item_end=True
            )
        else:
            _walk_elements(
                handle,
                handle.tell() + length,
                implicit,
                little,
                depth,
                found,
                budget,
                until_item_end=False,
            )


def _native_pixel_problem(dataset: Any, pixel: _PixelElement) -> str | None:
    if pixel.length == _UNDEFINED:
        return "native pixel data with undefined length"
    try:
        rows = int(dataset.Rows)
        columns = int(dataset.Columns)
        bits_allocated = int(dataset.BitsAllocated)
        samples = int(dataset.get("SamplesPerPixel", 1) or 1)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return "pixel data without valid Rows, Columns or Bits Allocated"
    if _text(dataset.get("PhotometricInterpretation")) == "YBR_FULL_422":
        # Native 4:2:2 keeps two samples per pixel instead of three (PS3.3 §C.7.6.3.1.2).
        samples = 2
    bits = rows * columns * samples * frames * bits_allocated
    expected = (bits + 7) // 8
    if pixel.length < expected:
        return f"pixel data truncated: {pixel.length} of {expected} bytes"
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "value"):
        value = value.value
    return str(value).strip().rstrip("\x00").strip()


def _is_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and bool(_UID.match(value))


def _integer(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _date(value: Any) -> date | None:
    text = _text(value)
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None
