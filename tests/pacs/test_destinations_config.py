"""Destinations from settings: the archive by default, RELAYPACS_PACS_URL, a destinations file."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from relaypacs.pacs.destinations import DestinationConfigError, open_destinations
from relaypacs.pacs.destinations.archive import ArchiveDestination
from relaypacs.pacs.destinations.dicomweb import DicomWebDestination
from tests.conftest import make_settings

DB = "sqlite+aiosqlite:///unused.db"


def test_without_a_pacs_the_local_archive_is_the_destination(tmp_path: Path) -> None:
    pacs = open_destinations(make_settings(DB, tmp_path))
    (only,) = pacs.destinations
    assert isinstance(only.destination, ArchiveDestination)
    assert only.destination.root == (tmp_path / "archive").resolve()
    assert (only.name, only.kind) == ("archive", "archive")


def test_pacs_url_names_one_dicomweb_destination(tmp_path: Path) -> None:
    settings = make_settings(
        DB,
        tmp_path,
        pacs_url="http://pacs.example:8080",
        pacs_kind="dcm4chee",
        pacs_aet="RELAY",
        pacs_name="main",
    )
    (main,) = open_destinations(settings).destinations
    assert isinstance(main.destination, DicomWebDestination)
    assert main.destination.root == "http://pacs.example:8080/dcm4chee-arc/aets/RELAY/rs"
    assert (main.name, main.kind) == ("main", "dcm4chee")


def test_destinations_file_reads_secrets_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "destinations.json"
    file.write_text(
        json.dumps(
            [
                {
                    "name": "orthanc",
                    "kind": "orthanc",
                    "url": "http://o:8042",
                    "username": "relay",
                    "password_env": "TEST_ORTHANC_PASSWORD",
                },
                {"name": "copy", "kind": "archive", "path": str(tmp_path / "copy")},
            ]
        )
    )
    monkeypatch.setenv("TEST_ORTHANC_PASSWORD", "from-env")
    pacs = open_destinations(make_settings(DB, tmp_path, pacs_destinations_file=file))
    assert [d.name for d in pacs.destinations] == ["orthanc", "copy"]
    orthanc = pacs.destinations[0].destination
    assert isinstance(orthanc, DicomWebDestination)
    assert orthanc.root == "http://o:8042/dicom-web"
    auth = orthanc._client.auth
    assert isinstance(auth, httpx.BasicAuth)
    monkeypatch.delenv("TEST_ORTHANC_PASSWORD")
    with pytest.raises(DestinationConfigError, match="TEST_ORTHANC_PASSWORD"):
        open_destinations(make_settings(DB, tmp_path, pacs_destinations_file=file))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"name": "a", "kind": "conquest", "url": "http://x"}], "kind"),
        ([{"name": "a", "kind": "generic", "url": "ftp://x"}], "url"),
        ([{"name": "a", "kind": "archive"}, {"name": "a", "kind": "archive"}], "unique"),
        ([{"kind": "archive"}], "name"),
        ({"name": "a"}, "list"),
    ],
)
def test_unusable_destination_settings_stop_the_start(
    tmp_path: Path, entries: object, message: str
) -> None:
    file = tmp_path / "destinations.json"
    file.write_text(json.dumps(entries))
    with pytest.raises(DestinationConfigError, match=message):
        open_destinations(make_settings(DB, tmp_path, pacs_destinations_file=file))


async def test_readyz_reports_each_destination(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.json()["checks"]["pacs:archive"] == "ok"
