"""A real Orthanc (apt `orthanc` + `orthanc-dicomweb`) as the test PACS.

Each :class:`OrthancServer` has its own storage directory, free HTTP and DICOM ports and HTTP
basic authentication, and can be stopped, killed and started again on the same ports and
storage (a PACS that goes down and comes back).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def orthanc_available() -> bool:
    return shutil.which("Orthanc") is not None and DICOMWEB_PLUGIN.exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class OrthancServer:
    def __init__(self, directory: Path, *, username: str = "relay") -> None:
        self.directory = directory
        self.username = username
        self.password = secrets.token_urlsafe(16)
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "storage").mkdir(exist_ok=True)
        self.config_path = directory / "orthanc.json"
        self.config_path.write_text(
            json.dumps(
                {
                    "Name": "RELAYPACS-TEST",
                    "StorageDirectory": str(directory / "storage"),
                    "IndexDirectory": str(directory / "storage"),
                    "HttpPort": self.http_port,
                    "DicomPort": self.dicom_port,
                    "RemoteAccessAllowed": False,
                    "AuthenticationEnabled": True,
                    "RegisteredUsers": {self.username: self.password},
                    "Plugins": [str(DICOMWEB_PLUGIN)],
                    "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
                }
            )
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)

    def start(self, timeout: float = 30.0) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        log = (self.directory / "orthanc.log").open("ab")
        self.process = subprocess.Popen(
            ["Orthanc", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(auth=self.auth, timeout=2.0) as client:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"Orthanc exited with {self.process.returncode}")
                try:
                    if client.get(f"{self.url}/system").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("Orthanc did not answer GET /system in time")
                # Nothing to wait on but the port: Orthanc answers within ~0.3 s here.
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=15)

    def restart(self) -> None:
        self.stop()
        self.start()

    # --- what the PACS holds (its own REST API, not DICOMweb) ---

    def instance_id(self, sop_instance_uid: str) -> str | None:
        response = httpx.post(
            f"{self.url}/tools/find",
            auth=self.auth,
            json={"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}},
            timeout=10,
        )
        response.raise_for_status()
        ids: list[str] = response.json()
        return ids[0] if ids else None

    def instance_sha256(self, sop_instance_uid: str) -> str | None:
        instance = self.instance_id(sop_instance_uid)
        if instance is None:
            return None
        response = httpx.get(f"{self.url}/instances/{instance}/file", auth=self.auth, timeout=30)
        response.raise_for_status()
        return hashlib.sha256(response.content).hexdigest()

    def study_instance_count(self, study_instance_uid: str) -> int:
        response = httpx.post(
            f"{self.url}/tools/find",
            auth=self.auth,
            json={"Level": "Instance", "Query": {"StudyInstanceUID": study_instance_uid}},
            timeout=10,
        )
        response.raise_for_status()
        return len(response.json())
