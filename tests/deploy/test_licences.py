"""PRD C-BIZ-03: nothing GPL or AGPL ships in production (Python and npm), checked in make test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tools.licences import main, npm_packages, python_packages, verdict


@pytest.mark.parametrize(
    ("licence", "expected"),
    [
        ("MIT", "ok"),
        ("Apache-2.0 OR BSD-3-Clause", "ok"),
        ("LGPL-2.1-or-later", "ok"),
        ("GNU Lesser General Public License v3 (LGPLv3)", "ok"),
        ("Mozilla Public License 2.0 (MPL 2.0)", "ok"),
        ("MIT OR GPL-2.0", "ok"),
        ("GPL-3.0-only", "forbidden"),
        ("AGPL-3.0-or-later", "forbidden"),
        ("GNU General Public License v3 (GPLv3)", "forbidden"),
        ("GNU Affero General Public License v3", "forbidden"),
        ("GPL-2.0 AND MIT", "forbidden"),
        ("", "unknown"),
        ("UNKNOWN", "unknown"),
    ],
)
def test_licence_verdicts(licence: str, expected: str) -> None:
    assert verdict(licence) == expected


def test_every_production_package_has_an_acceptable_licence(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([]) == 0, capsys.readouterr().out


def test_the_python_set_is_the_production_set() -> None:
    names = {package.name for package in python_packages()}
    assert {"fastapi", "sqlalchemy", "pydicom", "prometheus-client"} <= names
    # Development tools are not shipped, so they are not checked.
    assert not names & {"pytest", "mypy", "ruff", "moto", "hypothesis"}


def test_npm_dev_dependencies_are_left_out_and_gpl_is_caught(tmp_path: Path) -> None:
    lock = {
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "web"},
            "node_modules/react": {"version": "19.0.0", "license": "MIT"},
            "node_modules/some-gpl-widget": {"version": "1.0.0", "license": "GPL-3.0"},
            "node_modules/vite": {"version": "8.3.8", "license": "MIT", "dev": True},
            "node_modules/gpl-build-tool": {"version": "1.0.0", "license": "GPL-3.0", "dev": True},
        },
    }
    path = tmp_path / "package-lock.json"
    path.write_text(json.dumps(lock))
    packages = {package.name: package for package in npm_packages(path)}
    assert set(packages) == {"react", "some-gpl-widget"}
    assert packages["some-gpl-widget"].verdict == "forbidden"
