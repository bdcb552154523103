"""The release database: what was built, verified and promoted, by whom and when.

    from release_manager.db import connect, migrate, record_build
    db = connect(settings.database_url)          # SQLite, MariaDB or PostgreSQL
    migrate.upgrade(db)                          # `relman db upgrade`
    record_build(result.as_dict(), db=db)

Models in models.py, the lifecycle in lifecycle.py, writes in records.py, reads in queries.py.
Names are imported on first use, so `import release_manager.db.lifecycle` stays cheap for the CLI.
"""
import importlib

_WHERE = {
    "Database": "connection", "DatabaseError": "connection", "SchemaError": "connection", "connect": "connection",
    "for_settings": "connection", "mask": "connection",
    "IllegalTransition": "lifecycle",
    "Outcome": "records", "create_image_request": "records", "record_build": "records", "record_builds": "records",
    "record_promotion": "records", "record_sif": "records", "record_verification": "records", "request_debug_build": "records",
    "transition": "records", "update_debug_request": "records",
    "record_farm_run": "farm", "record_farm_tasks": "farm",
    "InvalidResult": "results", "load_result_files": "results", "parse_result": "results",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
