"""ZIP archives of DICOM files (as exported from CDs), unpacked with limits. Blocking.

An archive is refused whole when it has too many entries or would expand past the size limit
(both judged from the central directory before anything is extracted). Each entry is then judged
alone: an absolute name, a ``..`` component, encryption or a compression ratio typical of a zip
bomb make that entry refused with a reason, and extraction stops the moment an entry produces more
bytes than its header declared. Entry names are display data: every entry is written to a
temporary file with a random name, never to a path derived from its name.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from relaypacs.config import GIB

_COPY_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class ZipLimits:
    max_entries: int = 10_000
    max_total_bytes: int = 8 * GIB
    #: Uncompressed / compressed. DICOM images compress ~2-10x; blank frames more; bombs 1000x+.
    max_ratio: int = 200


class ArchiveRefused(Exception):
    """The archive as a whole breaks a limit or cannot be read; the reason is safe to show."""


@dataclass(frozen=True)
class ExtractedEntry:
    size: int
    sha256: str


def looks_like_zip(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(132)
    if len(head) == 132 and head[128:132] == b"DICM":
        return False  # a DICOM file whose preamble happens to start with "PK"
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def open_archive(path: Path, limits: ZipLimits) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """Open ``path`` and return its file entries after the archive-wide limits pass."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArchiveRefused(f"unreadable ZIP archive ({type(exc).__name__})") from exc
    entries = [info for info in archive.infolist() if not info.is_dir()]
    if len(entries) > limits.max_entries:
        archive.close()
        raise ArchiveRefused(f"ZIP archive has more than {limits.max_entries} entries")
    if sum(info.file_size for info in entries) > limits.max_total_bytes:
        archive.close()
        raise ArchiveRefused("ZIP archive would expand beyond the size limit")
    return archive, entries


def entry_problem(info: zipfile.ZipInfo, limits: ZipLimits) -> str | None:
    """Why this entry must not be extracted, or ``None``."""
    name = info.filename
    if "\x00" in name or name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "unsafe path in archive (absolute)"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "unsafe path in archive ('..')"
    if info.flag_bits & 0x1:
        return "encrypted archive entry"
    if info.file_size > 0 and info.file_size / max(info.compress_size, 1) > limits.max_ratio:
        return "compression ratio too high (zip bomb?)"
    return None


def is_ignorable(info: zipfile.ZipInfo) -> bool:
    """Operating system litter that is neither DICOM nor worth a complaint."""
    parts = PurePosixPath(info.filename.replace("\\", "/")).parts
    return any(part == "__MACOSX" for part in parts) or parts[-1] in {".DS_Store", "Thumbs.db"}


def extract_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> ExtractedEntry:
    """Stream one entry to ``target`` with its SHA-256; refuses to write past its declared size."""
    digest = hashlib.sha256()
    size = 0
    try:
        with archive.open(info) as source, target.open("wb") as sink:
            while block := source.read(_COPY_BLOCK):
                size += len(block)
                if size > info.file_size:
                    raise ArchiveRefused("entry is larger than its header declares")
                digest.update(block)
                sink.write(block)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        target.unlink(missing_ok=True)
        raise ArchiveRefused(f"unreadable archive entry ({type(exc).__name__})") from exc
    except ArchiveRefused:
        target.unlink(missing_ok=True)
        raise
    return ExtractedEntry(size=size, sha256=digest.hexdigest())
