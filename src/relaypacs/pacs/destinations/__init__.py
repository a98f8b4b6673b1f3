"""Build the configured destinations.

``RELAYPACS_PACS_URL`` (+ ``_PACS_KIND``, ``_PACS_USERNAME``/``_PACS_PASSWORD`` or
``_PACS_TOKEN``) names one DICOMweb destination; ``RELAYPACS_PACS_DESTINATIONS_FILE`` names a
JSON list of more::

    [{"name": "main", "kind": "dcm4chee", "url": "https://pacs:8443", "aet": "DCM4CHEE",
      "token_env": "MAIN_PACS_TOKEN"},
     {"name": "orthanc", "kind": "orthanc", "url": "http://orthanc:8042",
      "username": "relay", "password_env": "ORTHANC_PASSWORD"},
     {"name": "copy", "kind": "archive", "path": "/srv/dicom"}]

Secrets are read from the environment variables the file names (``password_env``,
``token_env``), so the file itself holds none. With no destination configured, the local
archive under ``DATA_DIR/archive`` is the destination.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from relaypacs.config import Settings
from relaypacs.pacs.breaker import CircuitBreaker, GuardedDestination
from relaypacs.pacs.destination import Destination
from relaypacs.pacs.destinations.archive import ArchiveDestination
from relaypacs.pacs.destinations.dicomweb import KINDS, DicomWebDestination, dicomweb_root


class DestinationConfigError(ValueError):
    """The destination settings cannot work; raised at start-up."""


@dataclass
class PacsDestinations:
    destinations: list[GuardedDestination] = field(default_factory=list)

    @property
    def primary(self) -> GuardedDestination:
        return self.destinations[0]

    def get(self, name: str) -> GuardedDestination | None:
        return next((d for d in self.destinations if d.name == name), None)

    async def close(self) -> None:
        for destination in self.destinations:
            await destination.close()


def open_destinations(settings: Settings) -> PacsDestinations:
    specs: list[dict[str, Any]] = []
    if settings.pacs_url:
        specs.append(
            {
                "name": settings.pacs_name,
                "kind": settings.pacs_kind,
                "url": settings.pacs_url,
                "aet": settings.pacs_aet,
                "username": settings.pacs_username,
                "password": settings.pacs_password,
                "token": settings.pacs_token,
            }
        )
    if settings.pacs_destinations_file is not None:
        specs.extend(_read_file(settings.pacs_destinations_file))
    if not specs:
        specs.append({"name": "archive", "kind": "archive"})
    names = [str(spec.get("name", "")) for spec in specs]
    if len(set(names)) != len(names):
        raise DestinationConfigError("destination names must be unique")
    return PacsDestinations(
        [
            GuardedDestination(
                _build(spec, settings),
                CircuitBreaker(
                    failure_threshold=settings.pacs_breaker_failures,
                    reset_seconds=settings.pacs_breaker_reset_seconds,
                ),
            )
            for spec in specs
        ]
    )


def _read_file(path: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DestinationConfigError(f"cannot read {path}: {type(exc).__name__}") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise DestinationConfigError(f"{path} must hold a JSON list of objects")
    return entries


def _secret(spec: dict[str, Any], key: str) -> str | None:
    variable = spec.get(f"{key}_env")
    if variable:
        value = os.environ.get(str(variable))
        if value is None:
            raise DestinationConfigError(
                f"destination {spec.get('name')!r}: environment variable {variable} is not set"
            )
        return value
    value = spec.get(key)
    return None if value is None else str(value)


def _build(spec: dict[str, Any], settings: Settings) -> Destination:
    name = str(spec.get("name") or "")
    kind = str(spec.get("kind") or "generic")
    if not name:
        raise DestinationConfigError("every destination needs a name")
    if kind == "archive":
        path = spec.get("path")
        root = Path(path) if path else settings.pacs_archive_dir or settings.data_dir / "archive"
        return ArchiveDestination(root.resolve(), name=name)
    if kind not in KINDS:
        raise DestinationConfigError(
            f"destination {name!r}: kind must be one of {(*KINDS, 'archive')}"
        )
    url = str(spec.get("url") or "")
    if not url.startswith(("http://", "https://")):
        raise DestinationConfigError(f"destination {name!r}: url must be http(s)://")
    verify: bool | str = True
    if settings.pacs_ca_file is not None:
        verify = str(settings.pacs_ca_file)
    return DicomWebDestination(
        name,
        dicomweb_root(url, kind, aet=spec.get("aet")),
        kind=kind,
        username=spec.get("username"),
        password=_secret(spec, "password"),
        token=_secret(spec, "token"),
        timeout=httpx.Timeout(settings.pacs_timeout_seconds, connect=10.0, pool=60.0),
        verify=verify,
        max_connections=settings.stow_parallel_requests * 2,
    )
