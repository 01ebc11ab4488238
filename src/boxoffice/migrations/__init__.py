"""Alembic migrations shipped inside the package, so `boxoffice db upgrade` works anywhere."""

from __future__ import annotations

from alembic.config import Config

MIGRATIONS_LOCATION = "boxoffice:migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS_LOCATION)
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url
    return config
