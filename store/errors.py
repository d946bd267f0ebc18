"""Errors of the results database. Each message is one line that a user can act on; the
command line turns them into its own one-line errors (the store never imports `search`)."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of everything the store raises on purpose."""


class DatabaseNotFound(StoreError):
    """Opening for reading found no database (reading never creates one)."""


class NotAnOptforgeDatabase(StoreError):
    """The database exists but does not hold optforge's tables."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer optforge than this one."""


class SchemaOutdated(StoreError):
    """The database has an older schema and the caller asked not to upgrade it."""


class ConnectionFailed(StoreError):
    """The URL is malformed, names an unknown driver, or the server cannot be reached."""


class NotFound(StoreError, LookupError):
    """No campaign / program / evaluation with the given id, name or hash."""


class AlreadyExists(StoreError):
    """A campaign with that name already exists."""


class InvalidRecord(StoreError, ValueError):
    """An argument a write was given is malformed (wrong type, negative count, ...);
    nothing was written."""


class DatabaseBusy(StoreError):
    """Another writer held the database for longer than the store is willing to wait."""
