"""Imports every feature's tables so `Base.metadata` is complete (Alembic, tests)."""

from boxoffice.accounts import models as accounts_models
from boxoffice.audit import models as audit_models
from boxoffice.booking import models as booking_models
from boxoffice.catalog import models as catalog_models
from boxoffice.concessions import models as concessions_models
from boxoffice.core import idempotency
from boxoffice.core.db import Base
from boxoffice.distribution import models as distribution_models
from boxoffice.documents import models as documents_models
from boxoffice.jobs import lease as jobs_lease
from boxoffice.loyalty import models as loyalty_models
from boxoffice.notifications import models as notifications_models
from boxoffice.payments import models as payments_models
from boxoffice.pricing import models as pricing_models
from boxoffice.promotions import models as promotions_models
from boxoffice.reporting import models as reporting_models
from boxoffice.reviews import models as reviews_models
from boxoffice.scheduling import models as scheduling_models
from boxoffice.tickets import models as tickets_models
from boxoffice.venues import models as venues_models

__all__ = [
    "Base",
    "accounts_models",
    "audit_models",
    "booking_models",
    "catalog_models",
    "concessions_models",
    "distribution_models",
    "documents_models",
    "idempotency",
    "jobs_lease",
    "loyalty_models",
    "notifications_models",
    "payments_models",
    "pricing_models",
    "promotions_models",
    "reporting_models",
    "reviews_models",
    "scheduling_models",
    "tickets_models",
    "venues_models",
]
