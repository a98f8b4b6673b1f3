"""Licences of everything that ships in production, failing on GPL and AGPL (PRD C-BIZ-03).

Python: the production dependency set (``uv export --frozen --no-dev``), each licence read from
the installed distribution's metadata (``License-Expression``, ``License``, trove classifiers).
npm: the production packages of web/package-lock.json (``dev`` and ``devOptional`` entries are
build tools that never reach a browser), each licence from the lock file.

LGPL and MPL are weak copyleft and allowed for libraries used unmodified; a dual licence passes
when one of its alternatives is acceptable. Services that run beside RelayPACS as separate
programs (Orthanc, MinIO, Grafana, PostgreSQL...) are not dependencies and are outside this rule
(docs/deploy.md, "Licences").

Usage: ``python tools/licences.py [--list]``; exit 1 on a forbidden or unknown licence.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_LOCK = ROOT / "web" / "package-lock.json"

FORBIDDEN = re.compile(
    r"(?<![L])\bA?GPL\b|(?<!Lesser )(?<!Library )\bGeneral Public License|\bAffero\b", re.I
)
# Licences whose metadata says nothing usable, checked by hand: name -> (licence, where).
# Windows-only packages are never installed here, so their metadata cannot be read.
KNOWN: dict[str, tuple[str, str]] = {
    "colorama": ("BSD-3-Clause", "LICENSE.txt of colorama 0.4.x"),
    "pywin32": ("PSF-2.0", "win32/License.txt of pywin32"),
}


@dataclass(frozen=True)
class Package:
    ecosystem: str
    name: str
    version: str
    licence: str

    @property
    def verdict(self) -> str:
        return verdict(self.licence)


def verdict(licence: str) -> str:
    """``ok``, ``forbidden`` or ``unknown`` for a licence string or SPDX-like expression."""
    text = licence.strip()
    if not text or text.upper() in {"UNKNOWN", "UNLICENSED", "SEE LICENSE IN LICENSE"}:
        return "unknown"
    alternatives = [part.strip(" ()") for part in re.split(r"\s+OR\s+|\s*;\s*|\s*\|\|\s*", text)]
    if any(alternative and not FORBIDDEN.search(alternative) for alternative in alternatives):
        return "ok"
    return "forbidden"


def _python_licence(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    expression = meta.get("License-Expression")
    if expression:
        return str(expression)
    classifiers = [
        c.split("::")[-1].strip()
        for c in meta.get_all("Classifier") or []
        if c.startswith("License ::") and c.strip() != "License :: OSI Approved"
    ]
    if classifiers:
        # Several classifiers mean the user may choose (e.g. MIT and Apache for dual licences).
        return " OR ".join(classifiers)
    licence = meta.get("License") or ""
    first_line = licence.strip().splitlines()[0] if licence.strip() else ""
    return first_line[:120]


def python_packages() -> list[Package]:
    exported = subprocess.run(
        [
            *_uv_command(),
            "export",
            "--frozen",
            "--no-dev",
            "--no-hashes",
            "--no-emit-project",
            "--no-header",
            "--no-annotate",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"UV_PYTHON_DOWNLOADS": "never", **_environ()},
    ).stdout
    packages = []
    for line in exported.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement, _, marker = line.partition(";")
        name, _, version = requirement.strip().partition("==")
        if marker.strip() and not _marker_applies(marker.strip()):
            # Installed on other platforms only (e.g. Windows): read what uv would install there.
            licence = KNOWN[name][0] if name in KNOWN else ""
            packages.append(Package("python", name, version, licence))
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            packages.append(Package("python", name, version, "not installed"))
            continue
        licence = KNOWN[name][0] if name in KNOWN else _python_licence(dist)
        packages.append(Package("python", name, version, licence))
    return packages


def _environ() -> dict[str, str]:
    return dict(os.environ)


def _uv_command() -> list[str]:
    """uv as the Makefile runs it (``python3 -m uv``), or from the venv or PATH."""
    for candidate in ([sys.executable, "-m", "uv"], ["python3", "-m", "uv"], ["uv"]):
        try:
            probe = subprocess.run(
                [*candidate, "--version"], capture_output=True, check=False, cwd=ROOT
            )
        except FileNotFoundError:
            continue
        if probe.returncode == 0:
            return candidate
    raise SystemExit("uv is not installed: run `make install`")


def _marker_applies(marker: str) -> bool:
    from packaging.markers import Marker

    return bool(Marker(marker).evaluate())


def npm_packages(lock_file: Path = PACKAGE_LOCK) -> list[Package]:
    if not lock_file.exists():
        return []
    lock = json.loads(lock_file.read_text())
    packages = []
    for path, entry in sorted(lock.get("packages", {}).items()):
        if not path or entry.get("dev") or entry.get("devOptional") or entry.get("link"):
            continue
        name = entry.get("name") or path.rsplit("node_modules/", 1)[-1]
        licence = entry.get("license") or ""
        if isinstance(licence, dict):  # the old {"type": ...} form
            licence = licence.get("type", "")
        packages.append(Package("npm", name, entry.get("version", "?"), str(licence)))
    return packages


def main(argv: list[str]) -> int:
    packages = python_packages() + npm_packages()
    show_all = "--list" in argv
    bad = [p for p in packages if p.verdict != "ok"]
    for package in packages:
        if show_all or package in bad:
            mark = {"ok": "  ", "forbidden": "!!", "unknown": "??"}[package.verdict]
            print(
                f"{mark} {package.ecosystem:6} {package.name}=={package.version}: "
                f"{package.licence or '-'}"
            )
    counts = {eco: sum(p.ecosystem == eco for p in packages) for eco in ("python", "npm")}
    print(
        f"licences: {counts['python']} Python and {counts['npm']} npm production packages, "
        f"{len(bad)} not acceptable"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
