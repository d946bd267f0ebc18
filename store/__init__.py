"""The results database: every program the search scores, its score on every task, where it
came from, and what a campaign needs to resume.

`Store` is the whole interface (see `store.api`); it returns the frozen records of
`store.records`. The default database is the SQLite file ``./optforge.db`` (or
`$OPTFORGE_DB`); any SQLAlchemy URL works, PostgreSQL for campaigns spread over machines.
"""

from .api import Store, Transaction
from .engine import DEFAULT_URL, ENV_VAR, resolve_url
from .errors import (
    AlreadyExists,
    ConnectionFailed,
    DatabaseBusy,
    DatabaseDamaged,
    DatabaseFailed,
    DatabaseNotFound,
    InvalidRecord,
    NotAnOptforgeDatabase,
    NotFound,
    ReadOnlyDatabase,
    SchemaOutdated,
    SchemaTooNew,
    StoreError,
)
from .leases import Lease, LeaseHeld, LeaseLost
from .lineage import FORMATS as LINEAGE_FORMATS
from .lineage import write_lineage
from .models import CAMPAIGN_STATES, CAMPAIGN_STATUSES
from .programs import ProgramData
from .records import (
    CampaignRecord,
    CampaignStats,
    Checkpoint,
    EvaluationRecord,
    LeaseRecord,
    LineageEdge,
    ProgramRecord,
    RankedProgram,
    StageResult,
    SuiteSummary,
    TaskResultRecord,
)

__all__ = [
    "Store", "Transaction", "DEFAULT_URL", "ENV_VAR", "resolve_url",
    "StoreError", "AlreadyExists", "ConnectionFailed", "DatabaseBusy", "DatabaseNotFound",
    "DatabaseDamaged", "DatabaseFailed", "ReadOnlyDatabase",
    "InvalidRecord", "NotAnOptforgeDatabase", "NotFound", "SchemaOutdated", "SchemaTooNew",
    "Lease", "LeaseHeld", "LeaseLost", "LeaseRecord",
    "LINEAGE_FORMATS", "write_lineage", "CAMPAIGN_STATUSES", "CAMPAIGN_STATES", "ProgramData",
    "CampaignRecord", "CampaignStats", "Checkpoint", "EvaluationRecord", "LineageEdge",
    "ProgramRecord", "RankedProgram", "StageResult", "SuiteSummary", "TaskResultRecord",
]
