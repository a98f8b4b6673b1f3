"""The Dockerfile (Docker cannot run here): multi-stage, slim, non-root, health-checked, and
everything it copies exists and is what the gateway reads."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from relaypacs.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for instruction, argument in _instructions():
        if instruction == "FROM":
            name = argument.split(" AS ")[-1].strip() if " AS " in argument else argument
            current = stages.setdefault(name, [])
        current.append((instruction, argument))
    return stages


def test_three_stages_build_the_pwa_and_the_environment_and_run_slim() -> None:
    stages = _stages()
    assert list(stages) == ["web", "python-build", "runtime"]
    assert any("npm ci" in arg for ins, arg in stages["web"] if ins == "RUN")
    assert any("npm run build" in arg for ins, arg in stages["web"] if ins == "RUN")
    assert any(
        "uv sync --frozen --no-dev" in arg for ins, arg in stages["python-build"] if ins == "RUN"
    )
    assert "python:3.11-slim" in DOCKERFILE
    runtime = stages["runtime"]
    copied = [arg for ins, arg in runtime if ins == "COPY"]
    assert all(arg.startswith("--from=") for arg in copied), "runtime copies build outputs only"


def test_runs_as_an_unprivileged_user_with_a_health_check() -> None:
    runtime = _stages()["runtime"]
    users = [arg for ins, arg in runtime if ins == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    health = [arg for ins, arg in runtime if ins == "HEALTHCHECK"]
    assert health
    assert "/healthz" in health[0]
    assert [arg for ins, arg in runtime if ins == "CMD"][-1] == '["relaypacs", "serve"]'


def test_what_the_build_copies_exists() -> None:
    for source in ("web/package.json", "web/package-lock.json", "pyproject.toml", "uv.lock"):
        assert (ROOT / source).exists(), source
    assert (ROOT / "src" / "relaypacs").is_dir()


def test_environment_names_are_settings_the_gateway_reads() -> None:
    env = dict(re.findall(r"(RELAYPACS_[A-Z_]+)=(\S+)", DOCKERFILE))
    fields = {f"RELAYPACS_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    assert env["RELAYPACS_WEB_DIR"] == "/app/web/dist"


def test_secrets_and_local_state_stay_out_of_the_build_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for pattern in (".git", ".venv", "var", "web/node_modules", "**/*.env", "**/*.pem", "deploy"):
        assert pattern in ignored, pattern


@pytest.mark.slow
def test_the_image_environment_imports_every_module_and_migrates(tmp_path: Path) -> None:
    """What the python-build stage installs (production dependencies only, non-editable) is
    enough for every module, ships the migrations and package data, and migrates a database."""
    environment = tmp_path / "venv"
    uv = [sys.executable, "-m", "uv"] if _has_uv(sys.executable) else ["python3", "-m", "uv"]
    subprocess.run(
        [*uv, "sync", "--frozen", "--no-dev", "--no-editable", "-q"],
        cwd=ROOT,
        env={
            **os.environ,
            "UV_PROJECT_ENVIRONMENT": str(environment),
            "UV_PYTHON_DOWNLOADS": "never",
        },
        check=True,
    )
    python = environment / "bin" / "python"
    script = (
        "import importlib, pkgutil, relaypacs\n"
        "for m in pkgutil.walk_packages(relaypacs.__path__, 'relaypacs.'):\n"
        "    if '.migrations' not in m.name and not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "print('imported')\n"
    )
    # The image compiles its bytecode at build time (UV_COMPILE_BYTECODE); here the first
    # import writes it, so the migration below starts like the image's process, not by
    # compiling every module again (5 s) where PYTHONDONTWRITEBYTECODE is set.
    compiling = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    imported = subprocess.run(
        [str(python), "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=compiling,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    env = {
        **os.environ,
        "RELAYPACS_DATA_DIR": str(tmp_path / "data"),
        "RELAYPACS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'image.db'}",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    migrated = subprocess.run(
        [str(environment / "bin" / "relaypacs"), "migrate"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "up to date" in migrated.stdout


def _has_uv(python: str) -> bool:
    probe = subprocess.run([python, "-m", "uv", "--version"], capture_output=True, check=False)
    return probe.returncode == 0
