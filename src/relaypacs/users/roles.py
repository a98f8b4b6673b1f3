"""Account roles, apart from the SQLAlchemy models: `relaypacs admin` needs them to build its
options, and importing the ORM for an enum would slow every `relaypacs` command down."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    clinician = "clinician"
    radiographer = "radiographer"
    radiologist = "radiologist"
    admin = "admin"
