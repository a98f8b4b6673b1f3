"""Swagger UI at ``/docs`` from the gateway's own copy of its assets.

FastAPI's default page loads Swagger UI from a CDN, which a hospital network without internet
access never reaches: the page would stay blank. ``make web`` copies the assets of the pinned
``swagger-ui-dist`` package to ``web/dist/api-docs/`` (served like the rest of the built app);
only when they are missing (the PWA was not built) does the page fall back to the CDN.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse

from relaypacs.web import default_web_dir

#: Where the built app keeps the assets, as a URL path and under the web directory.
ASSETS = "api-docs"


def install_api_docs(app: FastAPI, web_dir: Path | None, *, openapi_url: str) -> None:
    root = (web_dir or default_web_dir()) / ASSETS
    local = (root / "swagger-ui-bundle.js").is_file() and (root / "swagger-ui.css").is_file()

    async def swagger_ui(_: Request) -> HTMLResponse:
        title = f"{app.title} - Swagger UI"
        if not local:
            return get_swagger_ui_html(openapi_url=openapi_url, title=title)
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"/{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"/{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"/{ASSETS}/favicon-32x32.png",
        )

    app.add_route("/docs", swagger_ui, include_in_schema=False)
