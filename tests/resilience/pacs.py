"""The test Orthanc (tests.support.orthanc) started inside the harness's network namespace.

The PACS sits beside the gateway at the reading centre, so gateway→PACS traffic stays inside the
namespace and never crosses the faulty link. Orthanc listens on the namespace's link address,
which the harness (outside) uses to read back what the PACS stored, once the faults are lifted.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.orthanc import OrthancServer


class NamespacedOrthanc(OrthancServer):
    def __init__(self, directory: Path, namespace: str, address: str) -> None:
        super().__init__(directory)
        self.namespace = namespace
        self.address = address
        config = json.loads(self.config_path.read_text())
        # Reachable on the namespace's address; still password-protected.
        config["RemoteAccessAllowed"] = True
        self.config_path.write_text(json.dumps(config))

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    def start(self, timeout: float = 30.0) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        log = (self.directory / "orthanc.log").open("ab")
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, "Orthanc", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        log.close()
        self._wait_ready(timeout)

    def gateway_env(self) -> dict[str, str]:
        return {
            "RELAYPACS_PACS_URL": self.url,
            "RELAYPACS_PACS_KIND": "orthanc",
            "RELAYPACS_PACS_USERNAME": self.username,
            "RELAYPACS_PACS_PASSWORD": self.password,
        }
