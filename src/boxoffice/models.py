"""Imports every feature's tables so `Base.metadata` is complete (Alembic, tests)."""

from boxoffice.accounts import models as accounts_models
from boxoffice.catalog import models as catalog_models
from boxoffice.core.db import Base
from boxoffice.scheduling import models as scheduling_models
from boxoffice.venues import models as venues_models

__all__ = ["Base", "accounts_models", "catalog_models", "scheduling_models", "venues_models"]
