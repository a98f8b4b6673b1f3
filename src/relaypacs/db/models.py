"""Every domain's models, imported in one place so Alembic and the mappers see them all."""

from relaypacs.analytics import models as analytics_models  # noqa: F401
from relaypacs.audit import models as audit_models  # noqa: F401
from relaypacs.auth import models as auth_models  # noqa: F401
from relaypacs.db.base import Base
from relaypacs.dicom import models as dicom_models  # noqa: F401
from relaypacs.jobs import models as jobs_models  # noqa: F401
from relaypacs.notifications import models as notifications_models  # noqa: F401
from relaypacs.reports import models as reports_models  # noqa: F401
from relaypacs.uploads import models as uploads_models  # noqa: F401
from relaypacs.users import models as users_models  # noqa: F401

__all__ = ["Base"]
