"""Alembic migrations shipped inside the package, so `boxoffice db upgrade` works anywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic.config import Config

MIGRATIONS_LOCATION = "boxoffice:migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_LOCATION)
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url
    return config


def include_object_for(dialect: str) -> Callable[..., bool]:
    """Autogenerate filter: indexes declared for one dialect only (`.ddl_if(dialect=...)`)
    exist only on that dialect."""

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        ddl_if = getattr(obj, "_ddl_if", None)
        if type_ == "index" and ddl_if is not None and ddl_if.dialect is not None:
            return bool(ddl_if.dialect == dialect)
        return True

    return include_object
