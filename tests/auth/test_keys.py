"""The signing key file's permissions: only a key readable by every local user is warned about."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog.testing

from relaypacs.auth.keys import Keyring, ensure_private_key

WARNING = "jwt_key_file_readable_by_others"


@pytest.mark.parametrize(
    ("mode", "warned"),
    [
        pytest.param(0o600, False, id="0600"),  # a generated key
        # The documented compose setup: group 10001 reads the Docker secret.
        pytest.param(0o640, False, id="0640"),
        pytest.param(0o644, True, id="0644"),
        pytest.param(0o604, True, id="0604"),
    ],
)
def test_only_a_key_readable_by_other_users_is_warned_about(
    tmp_path: Path, mode: int, warned: bool
) -> None:
    key_file = tmp_path / "keys" / "jwt-signing.pem"
    assert ensure_private_key(key_file)
    key_file.chmod(mode)
    with structlog.testing.capture_logs() as entries:
        # What a server does at start (outside production) and `relaypacs admin rotate-keys`.
        Keyring.open(key_file)
    warnings = [entry for entry in entries if entry["event"] == WARNING]
    assert bool(warnings) is warned, entries
    if warned:
        assert warnings[0]["log_level"] == "warning"
        assert warnings[0]["path"] == str(key_file)
