"""Upload tests run on both databases x both chunk stores (filesystem and a real S3 server)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from relaypacs.config import Settings
from tests.conftest import make_settings
from tests.support.s3 import S3_ENV, create_bucket, moto_server

STORES = ("file", "s3")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    saved = {key: os.environ.get(key) for key in S3_ENV}
    os.environ.update(S3_ENV)
    with moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session", params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def settings(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    store_kind: str,
    request: pytest.FixtureRequest,
) -> Settings:
    data_dir = tmp_path_factory.mktemp(f"data-{store_kind}")
    overrides: dict[str, object] = {}
    if store_kind == "s3":
        endpoint: str = request.getfixturevalue("s3_endpoint")
        overrides = {
            "storage_url": f"s3://{create_bucket(endpoint)}/relay",
            "s3_endpoint_url": endpoint,
        }
    return make_settings(database_url, data_dir, **overrides)
