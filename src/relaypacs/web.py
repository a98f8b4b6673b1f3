"""Serves the built PWA (web/dist) at ``/`` with a history fallback for client-side routes.

It is installed as the router's *default* handler, so it only ever sees requests that no route
matched (full or partial): it can never shadow the API, the docs, the metrics, the health probes
or anything a domain adds later. Even then it refuses the server's own path prefixes, so an
unknown ``/api/...`` path stays a problem+json 404 instead of an HTML page.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import anyio.to_thread
import structlog
from fastapi import FastAPI
from starlette.responses import FileResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

log = structlog.get_logger(__name__)

#: Paths the gateway itself answers; the PWA never stands in for them.
SERVER_PREFIXES = (
    "/api/",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/metrics",
    "/healthz",
    "/readyz",
    "/.well-known/",
)

#: Files that name the current release: browsers must revalidate them on every load, or a
#: deploy would never reach installed apps.
_REVALIDATE = {
    "index.html",
    "sw.js",
    "registerSW.js",
    "manifest.webmanifest",
    "sw-sync.js",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE_HEADER = "no-cache"
_DEFAULT = "public, max-age=86400"

# 'wasm-unsafe-eval': the chunk hasher is WebAssembly. blob: workers: the ZIP reader's
# decompression workers. Inline styles: progress bar widths.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "manifest-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'; "
    "object-src 'none'"
)


def default_web_dir() -> Path:
    """web/dist of the source tree (the package lives in src/relaypacs)."""
    return Path(__file__).resolve().parents[2] / "web" / "dist"


def cache_control(relative: str) -> str:
    name = PurePosixPath(relative).name
    if relative.startswith("assets/"):
        return _IMMUTABLE  # content-hashed by Vite
    if name in _REVALIDATE or (name.startswith("workbox-") and name.endswith(".js")):
        return _REVALIDATE_HEADER
    return _DEFAULT


def _locate(root: Path, path: str) -> tuple[Path, str] | None:
    """The file under ``root`` for a URL path, or None; never anything outside ``root``."""
    relative = path.lstrip("/")
    if relative == "":
        relative = "index.html"
    if "\x00" in relative or "\\" in relative:
        return None
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate, candidate.relative_to(root).as_posix()


class SinglePageApp:
    """ASGI app: a file from the build, else index.html for client routes, else the fallback."""

    def __init__(self, root: Path, fallback: ASGIApp) -> None:
        self.root = root.resolve()
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or path.startswith(SERVER_PREFIXES)
            or path in {prefix.rstrip("/") for prefix in SERVER_PREFIXES}
        ):
            await self.fallback(scope, receive, send)
            return
        found = await anyio.to_thread.run_sync(_locate, self.root, path)
        if found is None:
            last = PurePosixPath(path).name
            # A missing asset (has an extension) is a real 404: answering HTML for a script
            # would break the page in confusing ways. Anything else is a client route.
            if "." in last or path.startswith("/assets/"):
                await self.fallback(scope, receive, send)
                return
            found = await anyio.to_thread.run_sync(_locate, self.root, "/index.html")
            if found is None:
                await self.fallback(scope, receive, send)
                return
        file_path, relative = found
        headers = {"Cache-Control": cache_control(relative)}
        if relative == "index.html":
            headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response: Response
        if relative.endswith(".webmanifest"):
            response = FileResponse(
                file_path, headers=headers, media_type="application/manifest+json"
            )
        else:
            response = FileResponse(file_path, headers=headers)
        await response(scope, receive, send)


def install_web(app: FastAPI, web_dir: Path | None) -> None:
    """Serve the PWA from ``web_dir`` (default: web/dist) when it has been built."""
    root = web_dir or default_web_dir()
    if not (root / "index.html").is_file():
        log.info("web_app_not_built", hint="make web")
        return
    app.router.default = SinglePageApp(root, app.router.default)
