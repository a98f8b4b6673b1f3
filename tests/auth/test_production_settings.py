"""ENV=production refuses what is only fit for a developer's machine, with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from relaypacs.config import Settings, UnsafeConfigurationError


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "signing.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def _production(key_file: Path, tmp_path: Path, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "env": "production",
        "data_dir": tmp_path,
        "jwt_private_key_file": key_file,
        "public_url": "https://relay.example.org",
        "cors_origins": ["https://app.example.org"],
        "trusted_hosts": ["relay.example.org"],
    }
    values.update(overrides)
    return values


def test_a_safe_production_configuration_starts(key_file: Path, tmp_path: Path) -> None:
    settings = Settings(**_production(key_file, tmp_path))  # type: ignore[arg-type]
    assert settings.env == "production"


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"jwt_private_key_file": None}, "RELAYPACS_JWT_PRIVATE_KEY_FILE"),
        ({"jwt_private_key_file": Path("/nonexistent/key.pem")}, "RELAYPACS_JWT_PRIVATE_KEY_FILE"),
        ({"cors_origins": ["*"]}, "RELAYPACS_CORS_ORIGINS"),
        ({"public_url": None}, "RELAYPACS_PUBLIC_URL"),
        ({"public_url": "http://relay.example.org"}, "RELAYPACS_PUBLIC_URL"),
        ({"trusted_hosts": ["*"]}, "RELAYPACS_TRUSTED_HOSTS"),
    ],
    ids=["generated_key", "missing_key", "wildcard_cors", "no_url", "plain_http", "any_host"],
)
def test_production_refuses_unsafe_settings(
    key_file: Path, tmp_path: Path, overrides: dict[str, object], variable: str
) -> None:
    with pytest.raises(UnsafeConfigurationError, match=variable) as refused:
        Settings(**_production(key_file, tmp_path, **overrides))  # type: ignore[arg-type]
    assert "production" in str(refused.value)
    # The same values are accepted on a developer's machine.
    Settings(**_production(key_file, tmp_path, **overrides) | {"env": "development"})  # type: ignore[arg-type]


def test_serve_in_production_with_generated_keys_exits_with_the_reason(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "RELAYPACS_ENV": "production",
        "RELAYPACS_DATA_DIR": str(data_dir),
        "RELAYPACS_PUBLIC_URL": "http://relay.example.org",
        "RELAYPACS_CORS_ORIGINS": '["*"]',
        "RELAYPACS_PORT": "9",  # never reached: nothing may start listening
    }
    result = subprocess.run(
        [sys.executable, "-m", "relaypacs", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    for variable in ("JWT_PRIVATE_KEY_FILE", "CORS_ORIGINS", "PUBLIC_URL", "TRUSTED_HOSTS"):
        assert f"RELAYPACS_{variable}" in result.stderr
    assert "Traceback" not in result.stderr
    # Refused before anything was created: no generated key, no database.
    assert not data_dir.exists()
