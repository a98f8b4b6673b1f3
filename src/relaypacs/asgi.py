"""ASGI entry point for uvicorn (`relaypacs.asgi:app`)."""

from relaypacs.app import create_app

app = create_app(freeze_gc_after_startup=True)
