"""Campaign leases: one live owner per campaign.

A process that drives a campaign first takes its lease: a row-level claim (holder host, pid,
a random token, since, expires) written in the campaign's row inside a write transaction,
so two processes racing for it are serialised by the database (SQLite's ``BEGIN IMMEDIATE``,
PostgreSQL's ``SELECT ... FOR UPDATE``) and exactly one wins. The holder renews it on a
heartbeat (`Heartbeat`); every commit of the campaign's results checks the token in the same
transaction (`check`), so a holder that lost its lease can never write again (a fencing
token). The lease is released, with the campaign's new status, when the run ends.

A lease is live while it has not expired and, when its holder is on this host, while the
holder's process exists (a SIGKILLed campaign on this machine is free at once; on another
machine it is free when its lease expires). A campaign stored as ``running`` whose lease is
not live is reported as ``interrupted``: nobody is running it, and it can be resumed.

Times are the database's clock on a server (PostgreSQL's ``clock_timestamp()``), so hosts
with skewed clocks agree on when a lease expires; an SQLite file is only shared by processes
of one machine, which share its clock.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from . import models as m
from .errors import StoreError
from .records import LeaseRecord
from .refs import CampaignRef, campaign_row

DEFAULT_TTL = 60.0  # seconds a lease lives without renewal
HOST = socket.gethostname()


class LeaseHeld(StoreError):
    """Another live process holds the campaign's lease."""


class LeaseLost(StoreError):
    """This process's lease expired and was taken over (or released) by someone else;
    it must stop without writing."""


@dataclass(frozen=True)
class Lease:
    """What the holder keeps: the token proves ownership in every write."""

    campaign_id: int
    token: str
    ttl: float


def db_now(s: Session) -> datetime:
    """The current time on the database's clock (UTC, aware)."""
    if s.get_bind().dialect.name == "postgresql":
        return s.execute(text("SELECT clock_timestamp()")).scalar_one()
    return m.utcnow()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def holder(row: m.Campaign) -> LeaseRecord | None:
    if row.lease_token is None:
        return None
    return LeaseRecord(host=row.lease_host, pid=row.lease_pid, since=row.lease_since,
                       expires=row.lease_expires)


def is_live(lease: LeaseRecord | None, now: datetime) -> bool:
    if lease is None or lease.expires <= now:
        return False
    return lease.host != HOST or pid_alive(lease.pid)


def displayed_status(row: m.Campaign, now: datetime) -> str:
    """The stored status, except ``interrupted`` for a running campaign nobody runs."""
    if row.status == "running" and row.lease_token is not None and \
            not is_live(holder(row), now):
        return "interrupted"
    return row.status


def describe(lease: LeaseRecord) -> str:
    return (f"pid {lease.pid} on {lease.host} since "
            f"{lease.since.strftime('%Y-%m-%d %H:%M:%S')} UTC")


def _locked_row(s: Session, campaign: CampaignRef) -> m.Campaign:
    row = campaign_row(s, campaign)
    if s.get_bind().dialect.name != "sqlite":  # SQLite's BEGIN IMMEDIATE already serialises
        s.execute(select(m.Campaign.id).where(m.Campaign.id == row.id).with_for_update())
        s.refresh(row)
    return row


def acquire(s: Session, campaign: CampaignRef, ttl: float = DEFAULT_TTL) -> Lease:
    """Take the campaign's lease and mark it running, or raise `LeaseHeld` naming the live
    holder."""
    row = _locked_row(s, campaign)
    now = db_now(s)
    current = holder(row)
    if is_live(current, now):
        raise LeaseHeld(f"campaign {row.name} is being run by {describe(current)}; "
                        f"its lease expires unless renewed within {ttl:g} s")
    token = secrets.token_hex(16)
    row.lease_token, row.lease_host, row.lease_pid = token, HOST, os.getpid()
    row.lease_since, row.lease_expires = now, now + timedelta(seconds=ttl)
    row.status, row.updated_at, row.finished_at = "running", now, None
    s.flush()
    return Lease(row.id, token, ttl)


def check(s: Session, lease: Lease) -> m.Campaign:
    """Raise `LeaseLost` unless `lease` still holds its campaign (call it inside the
    transaction whose writes it guards)."""
    row = _locked_row(s, lease.campaign_id)
    if row.lease_token != lease.token:
        now_held = holder(row)
        by = f" by {describe(now_held)}" if now_held else ""
        raise LeaseLost(f"campaign {row.name} was taken over{by}: its lease expired while "
                        f"this process (pid {os.getpid()}) ran; it stopped without writing")
    return row


def renew(s: Session, lease: Lease) -> datetime:
    row = check(s, lease)
    row.lease_expires = db_now(s) + timedelta(seconds=lease.ttl)
    s.flush()
    return row.lease_expires


def release(s: Session, lease: Lease, status: str) -> None:
    """Give the lease up and set the campaign's final status for this run."""
    from .writes import set_campaign_status

    row = check(s, lease)
    row.lease_token = row.lease_host = row.lease_pid = None
    row.lease_since = row.lease_expires = None
    set_campaign_status(s, row.id, status)


class Heartbeat:
    """Renews a lease every `ttl / 4` seconds on a daemon thread while a campaign runs.
    Transient database failures are retried at the next beat; a lost lease stops the
    beating (the next fenced commit then raises `LeaseLost`)."""

    def __init__(self, renew_fn, interval: float):
        self._renew, self._interval = renew_fn, interval
        self._stop = threading.Event()
        self.lost: LeaseLost | None = None
        self._thread = threading.Thread(target=self._beat, name="optforge-lease",
                                        daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._renew()
            except LeaseLost as e:
                self.lost = e
                return
            except Exception:  # a busy or unreachable database: try again at the next beat
                continue
