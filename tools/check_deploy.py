"""Validate the deployment files without Docker (``make check-deploy``).

- ``compose``: deploy/docker-compose.yml against the official Compose Specification JSON schema
  (vendored in deploy/schema/), plus the cross-references ``docker compose`` itself would refuse
  (unknown services, volumes, networks, secrets) and our own rules (health checks, env files).
- ``nginx``: ``nginx -t`` on deploy/nginx/ in a temporary prefix. Docker's service names do not
  resolve here, so upstream host names become 127.0.0.1 and a throwaway certificate stands in for
  deploy/tls/; nothing else in the configuration is changed.
- ``prometheus``: ``promtool check config``, ``promtool check rules`` and ``promtool test rules``.
- ``grafana``: dashboards parse, use the provisioned datasource and have unique uids.

Usage: ``python tools/check_deploy.py [compose|nginx|prometheus|grafana ...]`` (default: all).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
COMPOSE_SCHEMA = DEPLOY / "schema" / "compose-spec.json"
NGINX_DIR = DEPLOY / "nginx"
PROMETHEUS_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"

# Services that run once and exit; everything else must say how Docker knows it is healthy.
ONE_SHOT_SERVICES = frozenset({"minio-init"})


# --------------------------------------------------------------------------- compose


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path.name}: not a YAML mapping")
    return document


def compose_problems(document: dict[str, Any], base_dir: Path = DEPLOY) -> list[str]:
    """Schema errors, then the references and rules the schema cannot express."""
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    problems = [
        f"schema: {'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    ]
    if problems:
        return problems

    services: dict[str, dict[str, Any]] = document.get("services") or {}
    declared = {
        kind: set((document.get(kind) or {}).keys()) for kind in ("volumes", "networks", "secrets")
    }
    declared["networks"].add("default")
    for name, service in services.items():
        where = f"services.{name}"
        depends = service.get("depends_on") or {}
        for dependency in depends if isinstance(depends, list) else depends.keys():
            if dependency not in services:
                problems.append(f"{where}.depends_on: no service named {dependency!r}")
            elif isinstance(depends, dict):
                condition = depends[dependency].get("condition")
                target = services[dependency]
                if condition == "service_healthy" and "healthcheck" not in target:
                    problems.append(
                        f"{where}.depends_on.{dependency}: waits for health but "
                        f"{dependency} has no healthcheck"
                    )
                if condition == "service_completed_successfully" and target.get("restart") not in (
                    None,
                    "no",
                ):
                    problems.append(
                        f"{where}.depends_on.{dependency}: waits for completion of a service "
                        "that restarts"
                    )
        for volume in service.get("volumes") or []:
            source = (
                volume.get("source") if isinstance(volume, dict) else volume.split(":")[0]
            ) or ""
            is_named = bool(source) and not source.startswith(("/", ".", "~", "$"))
            if is_named and source not in declared["volumes"]:
                problems.append(f"{where}.volumes: named volume {source!r} is not declared")
            elif (
                source.startswith(".")
                and not (base_dir / source).exists()
                and not _is_local_secret_path(source)
            ):
                problems.append(f"{where}.volumes: {source} does not exist")
        networks = service.get("networks") or []
        for network in networks if isinstance(networks, list) else networks.keys():
            if network not in declared["networks"]:
                problems.append(f"{where}.networks: network {network!r} is not declared")
        for secret in service.get("secrets") or []:
            secret_name = secret.get("source") if isinstance(secret, dict) else secret
            if secret_name not in declared["secrets"]:
                problems.append(f"{where}.secrets: secret {secret_name!r} is not declared")
        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            path = env_file if isinstance(env_file, str) else env_file["path"]
            example = base_dir / (path + ".example")
            if not example.exists():
                problems.append(f"{where}.env_file: {path} has no {example.name} to copy")
        if name not in ONE_SHOT_SERVICES and "healthcheck" not in service:
            problems.append(f"{where}: no healthcheck")
        if "ports" in service and name not in {"nginx", "prometheus", "grafana"}:
            problems.append(f"{where}: publishes ports; only nginx faces the network")
    for kind in ("secrets", "configs"):
        for name, spec in (document.get(kind) or {}).items():
            file = (spec or {}).get("file")
            if file and not _is_local_secret_path(file) and not (base_dir / file).exists():
                problems.append(f"{kind}.{name}: {file} does not exist")
    return problems


def _is_local_secret_path(path: str) -> bool:
    # Site secrets (keys, certificates, env files) are never committed; their folders are.
    folder = path.removeprefix("./").split("/")[0]
    return folder in {"secrets", "tls", "env"} and (DEPLOY / folder).is_dir()


# --------------------------------------------------------------------------- nginx


def write_self_signed_certificate(directory: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relaypacs.test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fullchain.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def render_nginx(
    prefix: Path,
    *,
    upstream: str = "127.0.0.1:8080",
    https_listen: str | None = None,
    http_listen: str | None = None,
) -> Path:
    """Copy deploy/nginx into ``prefix`` so it runs outside Docker; returns the main file.

    Only what ties the files to the container changes: the upstream address, file locations
    (certificate, pid, logs) and, when given, the listen addresses.
    """
    conf = prefix / "conf"
    shutil.copytree(NGINX_DIR, conf)
    mime_types = Path("/etc/nginx/mime.types")
    if mime_types.exists():
        shutil.copy(mime_types, conf / "mime.types")
    else:
        (conf / "mime.types").write_text("types { text/html html; }\n")
    (prefix / "logs").mkdir()
    write_self_signed_certificate(prefix / "tls")
    main = conf / "nginx.conf"
    text = main.read_text()
    text = text.replace("pid /var/run/nginx.pid;", f"pid {prefix / 'nginx.pid'};")
    text = text.replace("error_log /dev/stderr", f"error_log {prefix / 'logs' / 'error.log'}")
    text = text.replace("access_log /dev/stdout", f"access_log {prefix / 'logs' / 'access.log'}")
    # Tests run as root; nginx's default worker user could not read a private temp directory.
    text = "user root;\n" + text
    text = text.replace(
        "http {\n",
        "http {\n"
        + "".join(
            f"    {kind}_temp_path {prefix / (kind + '_temp')};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ),
        1,
    )
    main.write_text(text)
    site = conf / "conf.d" / "relaypacs.conf"
    text = site.read_text()
    text = re.sub(r"server gateway:8080", f"server {upstream}", text)
    text = text.replace("/etc/nginx/tls/", f"{prefix / 'tls'}/")
    text = text.replace("root /var/www/acme;", f"root {prefix / 'acme'};")
    if https_listen:
        text = text.replace("listen 443 ssl http2;", f"listen {https_listen} ssl http2;")
    if http_listen:
        text = text.replace("listen 80;", f"listen {http_listen};")
    text = re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", text)
    site.write_text(text)
    return main


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )


def nginx_problems() -> list[str]:
    binary = nginx_binary()
    if binary is None:
        return ["nginx is not installed (make system-deps)"]
    with tempfile.TemporaryDirectory(prefix="relaypacs-nginx-") as temp:
        prefix = Path(temp)
        main = render_nginx(prefix)
        result = subprocess.run(
            [binary, "-t", "-p", str(prefix), "-c", str(main), "-e", str(prefix / "error.log")],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        return [f"nginx -t: {line}" for line in result.stderr.splitlines() if line.strip()]
    return []


# --------------------------------------------------------------------------- prometheus


def promtool_binary() -> str | None:
    return shutil.which("promtool")


def prometheus_problems() -> list[str]:
    promtool = promtool_binary()
    if promtool is None:
        return ["promtool is not installed (make system-deps installs the prometheus package)"]
    problems = []
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "rules.yml", "alerts.yml"],
        ["test", "rules", "tests/alerts_test.yml"],
    ):
        result = subprocess.run(
            [promtool, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            problems.append(f"promtool {' '.join(args)}:\n{output}")
    return problems


# --------------------------------------------------------------------------- grafana


def grafana_problems() -> list[str]:
    problems = []
    datasources = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uids = {source["uid"] for source in datasources["datasources"]}
    seen: dict[str, str] = {}
    dashboards = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
    if not dashboards:
        problems.append("grafana: no dashboards")
    for path in dashboards:
        try:
            dashboard = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            problems.append(f"{path.name}: not JSON: {exc}")
            continue
        uid = dashboard.get("uid")
        if not uid or uid in seen:
            problems.append(f"{path.name}: missing or duplicate uid {uid!r}")
        seen[uid] = path.name
        for panel in iter_panels(dashboard):
            source = (panel.get("datasource") or {}).get("uid")
            if panel.get("type") != "row" and source not in uids:
                problems.append(f"{path.name}: panel {panel.get('title')!r} uses {source!r}")
            for target in panel.get("targets") or []:
                if not target.get("expr"):
                    problems.append(f"{path.name}: panel {panel.get('title')!r} has no query")
    return problems


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


# --------------------------------------------------------------------------- main


@contextmanager
def _section(name: str) -> Iterator[None]:
    print(f"check-deploy: {name} ...", flush=True)
    yield


CHECKS: dict[str, Callable[[], list[str]]] = {
    "compose": lambda: compose_problems(load_compose()),
    "nginx": nginx_problems,
    "prometheus": prometheus_problems,
    "grafana": grafana_problems,
}


def main(argv: list[str]) -> int:
    names = argv or list(CHECKS)
    unknown = [name for name in names if name not in CHECKS]
    if unknown:
        print(f"unknown check(s): {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
        return 2
    failed = False
    for name in names:
        with _section(name):
            problems = CHECKS[name]()
        for problem in problems:
            print(f"  FAIL {problem}")
        if problems:
            failed = True
        else:
            print("  ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
