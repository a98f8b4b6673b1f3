"""Every domain's models, imported in one place so Alembic and the mappers see them all."""

from relaypacs.db.base import Base

__all__ = ["Base"]
