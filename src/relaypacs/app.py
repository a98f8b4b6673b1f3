"""Composition root: builds the ASGI app from settings. No global mutable state lives elsewhere."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from relaypacs import __version__
from relaypacs.analytics.cache import FigureCache
from relaypacs.analytics.router import admin_router as admin_uploads_router
from relaypacs.analytics.router import router as analytics_router
from relaypacs.api_docs import install_api_docs
from relaypacs.audit.router import router as audit_router
from relaypacs.auth.router import jwks_router
from relaypacs.auth.router import router as auth_router
from relaypacs.config import Settings
from relaypacs.errors import (
    PROBLEM_MEDIA_TYPE,
    Problem,
    RequestTooLarge,
    install_error_handlers,
)
from relaypacs.jobs.registry import load_task_modules
from relaypacs.jobs.worker import start_in_process_worker
from relaypacs.logging import configure_logging
from relaypacs.middleware import (
    CORSMiddleware,
    RequestBodyLimitMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
    TrustedHostMiddleware,
    is_chunk_put,
)
from relaypacs.notifications.live import start_event_hub
from relaypacs.notifications.router import router as notifications_router
from relaypacs.operations.router import router as operations_router
from relaypacs.operations.sentry import init_sentry
from relaypacs.reports.router import router as reports_router
from relaypacs.resources import open_resources
from relaypacs.uploads.router import router as uploads_router
from relaypacs.users.router import admin_router as admin_users_router
from relaypacs.users.router import router as users_router
from relaypacs.web import install_web

API_PREFIX = "/api/v1"

log = structlog.get_logger(__name__)


def create_app(
    settings: Settings | None = None, *, freeze_gc_after_startup: bool = False
) -> FastAPI:
    """The gateway's ASGI app. ``freeze_gc_after_startup``: for a server process (``asgi.py``),
    not for tests, which build many apps in one process."""
    settings = settings or Settings()
    configure_logging(settings.log_level)
    # Errors go to Sentry only when a DSN is set, scrubbed of anything a request carried.
    init_sentry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            app.state.engine = resources.engine
            app.state.sessionmaker = resources.sessionmaker
            app.state.readiness = resources.readiness
            # --- domain start-up (background tasks that only the API process runs) ---
            # The API enqueues jobs of every stage (an admin's requeue, a study's forwarding)
            # whether or not this process runs them: it must know which stages there are.
            load_task_modules(settings.job_modules)
            # The job worker stops with `resources`, before the engine is disposed.
            app.state.job_worker = await start_in_process_worker(resources)
            app.state.event_hub = await start_event_hub(resources)
            app.state.analytics_cache = FigureCache(settings.analytics_cache_seconds)
            if freeze_gc_after_startup:
                # What start-up built lives as long as the process. Frozen, it is left out of
                # the collector's full passes, which otherwise walk it all (~180,000 objects,
                # ~100 ms) now and then in the middle of a request: the P99 of every route.
                gc.collect()
                gc.freeze()
            log.info("started", version=__version__, env=settings.env.value)
            try:
                yield
            finally:
                # --- domain shut-down ---
                await app.state.event_hub.stop()
                log.info("stopping")

    app = FastAPI(
        title="RelayPACS",
        version=__version__,
        summary="Resumable DICOM uploads over bad networks, forwarded to a PACS with STOW-RS.",
        lifespan=lifespan,
        docs_url=None,  # relaypacs.api_docs: served from our own copy of the assets
        redoc_url="/redoc",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    install_error_handlers(app)

    api = APIRouter(prefix=API_PREFIX)
    # --- domain routers (included under /api/v1) ---
    api.include_router(auth_router)
    api.include_router(users_router)
    api.include_router(admin_users_router)
    api.include_router(audit_router)
    api.include_router(uploads_router)
    api.include_router(notifications_router)
    api.include_router(reports_router)
    api.include_router(analytics_router)
    api.include_router(admin_uploads_router)
    app.include_router(api)
    app.include_router(operations_router)
    app.include_router(jwks_router)
    install_api_docs(app, settings.web_dir, openapi_url="/openapi.json")
    # The PWA answers only what no route above matched (see relaypacs.web).
    install_web(app, settings.web_dir)

    _install_openapi(app)
    # Innermost: its 413 gets the CORS and security headers and the request log like any answer.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_bytes=settings.max_json_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Content-MD5",
                "X-Upload-Token",
                "X-Request-ID",
                "Last-Event-ID",
            ],
            expose_headers=["X-Request-ID", "Retry-After", "Location"],
        )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts)
    # Outside the host and CORS checks: their refusals carry the same headers as any answer.
    app.add_middleware(SecurityHeadersMiddleware, hsts=_uses_https(settings))
    app.add_middleware(RequestContextMiddleware)
    return app


def _uses_https(settings: Settings) -> bool:
    return bool(settings.public_url and settings.public_url.startswith("https://"))


def _install_openapi(app: FastAPI) -> None:
    """Publish the Problem schema so every error response can reference it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        too_large = f"`{RequestTooLarge.code}`: {RequestTooLarge.title}"
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                # relaypacs.middleware limits every body but a chunk's.
                if "requestBody" in operation and not is_chunk_put(method.upper(), path):
                    documented = responses.setdefault("413", {}).get("description")
                    responses["413"]["description"] = (
                        f"{documented}; {too_large}" if documented else too_large
                    )
                for status, response in responses.items():
                    if status.isdigit() and int(status) >= 400:
                        response["content"] = problem
                # Any status may also come from the framework (401, 429, 500...): all are Problems.
                responses.setdefault(
                    "default", {"description": "An RFC 7807 problem", "content": problem}
                )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
