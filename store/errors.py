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


class DatabaseDamaged(StoreError):
    """The SQLite file is damaged ("database disk image is malformed"): some of its pages
    do not hold what SQLite expects. Found before anything is written to it, and then
    nothing is."""


class ReadOnlyDatabase(StoreError):
    """This process cannot write the database (a read-only file, directory or file
    system, or a server that refuses writes); nothing was written. `reason`, when known,
    says why in a few words ("the file is read-only")."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason


class DatabaseFailed(StoreError):
    """The database reported an error the store has no better name for (a disk I/O error,
    a full disk, a dropped server): its first line, naming the database."""
