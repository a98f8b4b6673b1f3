"""deploy/docker-compose.yml validates against the Compose Specification and our own rules."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from tools.check_deploy import DEPLOY, compose_problems, load_compose

from relaypacs.config import Settings


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def test_compose_file_is_valid(compose: dict[str, Any]) -> None:
    assert compose_problems(compose) == []


def test_runs_every_service_the_product_needs(compose: dict[str, Any]) -> None:
    assert {
        "gateway",
        "worker",
        "db",
        "redis",
        "minio",
        "minio-init",
        "orthanc",
        "prometheus",
        "grafana",
        "nginx",
    } <= set(compose["services"])


def test_gateway_and_worker_run_the_image_in_production_mode(compose: dict[str, Any]) -> None:
    for name in ("gateway", "worker"):
        service = compose["services"][name]
        environment = service["environment"]
        assert environment["RELAYPACS_ENV"] == "production"
        assert environment["RELAYPACS_STORAGE_URL"].startswith("s3://")
        assert environment["PROMETHEUS_MULTIPROC_DIR"].startswith("/run/")
        assert service["env_file"] == ["./env/relaypacs.env"]
        assert service["secrets"] == ["jwt_signing_key"]
        assert "relaypacs-data:/var/lib/relaypacs" in service["volumes"]
        assert service["read_only"] is True
        assert "ports" not in service
    assert compose["services"]["gateway"]["environment"]["RELAYPACS_RUN_WORKER_IN_PROCESS"] == (
        "false"
    )
    # The bucket exists before either starts.
    for name in ("gateway", "worker"):
        depends = compose["services"][name]["depends_on"]
        assert depends["minio-init"]["condition"] == "service_completed_successfully"
        assert depends["db"]["condition"] == "service_healthy"


def test_data_lives_on_named_volumes(compose: dict[str, Any]) -> None:
    mounts = {
        "db": "postgres-data:/var/lib/postgresql/data",
        "minio": "minio-data:/data",
        "orthanc": "orthanc-data:/var/lib/orthanc/db",
        "prometheus": "prometheus-data:/prometheus",
        "grafana": "grafana-data:/var/lib/grafana",
    }
    for service, mount in mounts.items():
        assert mount in compose["services"][service]["volumes"]


def test_monitoring_ports_are_bound_to_loopback_only(compose: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana"):
        assert all(port.startswith("127.0.0.1:") for port in compose["services"][name]["ports"])


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (lambda c: c["services"]["gateway"].update(restart_policy="always"), "schema:"),
        (lambda c: c["services"]["db"].update(healthcheck={"interval": 5}), "schema:"),
        (
            lambda c: c["services"]["worker"]["depends_on"].update(
                ghost={"condition": "service_started"}
            ),
            "no service named 'ghost'",
        ),
        (
            lambda c: c["services"]["gateway"]["volumes"].append("scratch:/scratch"),
            "named volume 'scratch' is not declared",
        ),
        (lambda c: c["services"]["redis"].pop("healthcheck"), "services.redis: no healthcheck"),
        (
            lambda c: c["services"]["db"].update(ports=["5432:5432"]),
            "publishes ports",
        ),
        (
            lambda c: c["services"]["grafana"].update(networks=["monitoring"]),
            "network 'monitoring' is not declared",
        ),
        (
            lambda c: c["services"]["gateway"].update(env_file=["./env/missing.env"]),
            "has no missing.env.example",
        ),
    ],
)
def test_broken_compose_files_are_refused(
    compose: dict[str, Any], mutation: Any, expected: str
) -> None:
    broken = copy.deepcopy(compose)
    mutation(broken)
    problems = compose_problems(broken)
    assert any(expected in problem for problem in problems), problems


def test_the_bucket_the_gateway_writes_to_is_created_at_start(compose: dict[str, Any]) -> None:
    storage = compose["services"]["gateway"]["environment"]["RELAYPACS_STORAGE_URL"]
    bucket = storage.removeprefix("s3://").split("/", 1)[0]
    init = compose["services"]["minio-init"]
    script = " ".join(init["command"])
    assert f"mc mb --ignore-existing local/{bucket}" in script
    assert init["restart"] == "no"


def test_orthanc_serves_dicomweb_where_the_example_settings_point(
    compose: dict[str, Any],
) -> None:
    environment = compose["services"]["orthanc"]["environment"]
    assert environment["DICOM_WEB_PLUGIN_ENABLED"] == "true"
    assert environment["ORTHANC__DICOM_WEB__ENABLE"] == "true"
    root = environment["ORTHANC__DICOM_WEB__ROOT"].rstrip("/")
    example = _env_example("relaypacs")
    assert example["RELAYPACS_PACS_URL"] == f"http://orthanc:8042{root}"


def test_every_retention_setting_is_in_the_env_example_and_the_runbook() -> None:
    """PRD C-BIZ-01: an operator finds each retention period where they configure the rest."""
    settings = {
        f"RELAYPACS_{name.upper()}"
        for name in Settings.model_fields
        if name.startswith("retention_")
    }
    assert "RELAYPACS_RETENTION_AUDIT_DAYS" in settings
    example = (DEPLOY / "env" / "relaypacs.env.example").read_text()
    operations = (DEPLOY.parent / "docs" / "operations.md").read_text()
    for name in sorted(settings):
        assert re.search(rf"^#? ?{name}=", example, re.M), f"{name} not in relaypacs.env.example"
        assert f"`{name}`" in operations, f"{name} not in docs/operations.md"


def _env_example(name: str) -> dict[str, str]:
    lines = (DEPLOY / "env" / f"{name}.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_postgresql_takes_as_many_connections_as_the_scaled_out_example_pools(
    compose: dict[str, Any],
) -> None:
    from relaypacs.db.engine import create_engine

    settings = Settings()
    per_process = settings.database_pool_size + settings.database_max_overflow
    engine = create_engine(
        "postgresql+asyncpg://user@db/relaypacs",
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    assert engine.pool.size() == settings.database_pool_size
    command = " ".join(compose["services"]["db"]["command"])
    found = re.search(r"max_connections=(\d+)", command)
    assert found is not None, command
    # The file's own example: --scale gateway=3 (2 processes each) --scale worker=4.
    assert int(found[1]) >= per_process * (3 * 2 + 4)
