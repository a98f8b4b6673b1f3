"""A throwaway Orthanc (Debian's package) as the PACS the gateway delivers to."""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.e2e.gateway import free_port

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def available() -> bool:
    return Path(ORTHANC).exists() and DICOMWEB_PLUGIN.exists()


class Orthanc:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.username = "relay"
        self.password = secrets.token_urlsafe(12)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)

    def start(self) -> None:
        config = {
            "Name": "E2EPACS",
            "StorageDirectory": str(self.root / "db"),
            "IndexDirectory": str(self.root / "db"),
            "HttpPort": self.port,
            "DicomPort": free_port(),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.username: self.password},
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        path = self.root / "orthanc.json"
        path.write_text(json.dumps(config))
        log = (self.root / "orthanc.log").open("wb")
        self.process = subprocess.Popen([ORTHANC, str(path)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/system", auth=self.auth, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("Orthanc did not start within 30 s")

    def instance_count(self, patient_id: str) -> int:
        response = httpx.post(
            f"{self.url}/tools/find",
            auth=self.auth,
            json={"Level": "Instance", "Query": {"PatientID": patient_id}},
            timeout=10,
        )
        response.raise_for_status()
        return len(response.json())

    def instance_sha256s(self, patient_id: str) -> dict[str, str]:
        """SOP Instance UID -> SHA-256 of the file Orthanc stored, for each of a patient."""
        response = httpx.post(
            f"{self.url}/tools/find",
            auth=self.auth,
            json={"Level": "Instance", "Query": {"PatientID": patient_id}, "Expand": True},
            timeout=10,
        )
        response.raise_for_status()
        digests: dict[str, str] = {}
        for instance in response.json():
            uid = instance["MainDicomTags"]["SOPInstanceUID"]
            data = httpx.get(
                f"{self.url}/instances/{instance['ID']}/file", auth=self.auth, timeout=30
            )
            data.raise_for_status()
            digests[uid] = hashlib.sha256(data.content).hexdigest()
        return digests

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
