"""The service's long-lived parts, built by create_app (or the CLI) from Settings."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.accounts.accounts import LoginPolicy, Principal, token_hash
from api.cases.grids import GridCache
from api.cases.ingest import MergePolicy
from api.settings import Settings
from api.storage.db import make_engine, make_sessionmaker, migrate
from api.storage.evidence_store import EvidenceStore

log = logging.getLogger(__name__)

CREDENTIALS_EPOCH_FILE = "credentials.epoch"  # in the data folder; see PrincipalCache

Stamp = tuple[int, int, int] | None


class PrincipalCache:
    """Who a token or device key stands for, remembered for `ttl_s` seconds (keyed by the key's
    SHA-256, never the key itself), so a busy camera does not cost a lookup per request.

    Revoking a key, deactivating a user or changing a password ends in `invalidate()`: it empties
    this cache and replaces `epoch_file` (in the data folder), and every cache whose process shares
    that folder (`serve`, workers, the CLI run with the same GRIDPATROL_DATA_DIR) compares each
    entry's stamp of that file with the file's current one (a stat, about a microsecond), so the old
    credential stops working at once in all of them. A process that does not share the folder (the
    same PostgreSQL database but another data folder, or a network file system caching attributes)
    sees the change when its entry expires, within ttl_s; ttl_s = 0 turns the cache off."""

    def __init__(self, ttl_s: float = 10.0, max_size: int = 10_000, epoch_file: Path | None = None) -> None:
        self.ttl_s = ttl_s
        self.max_size = max_size
        self.epoch_file = epoch_file
        self._items: dict[str, tuple[float, Stamp, Principal]] = {}
        self._lock = threading.Lock()

    def stamp(self) -> Stamp:
        """The epoch file as it is now; take it before resolving a key, hand it to put()."""
        if self.epoch_file is None:
            return None
        try:
            st = os.stat(self.epoch_file)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)

    def get(self, token: str) -> Principal | None:
        if self.ttl_s <= 0:
            return None
        key = token_hash(token)
        with self._lock:
            item = self._items.get(key)
        if item is None or item[0] < time.monotonic() or item[1] != self.stamp():
            return None
        return item[2]

    def put(self, token: str, principal: Principal, stamp: Stamp) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._items) >= self.max_size:
                self._items.clear()
            self._items[token_hash(token)] = (time.monotonic() + self.ttl_s, stamp, principal)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def invalidate(self) -> None:
        """Credentials changed (call after the commit): forget every cached principal, here and in
        every process sharing the epoch file."""
        self.clear()
        if self.epoch_file is None:
            return
        tmp = self.epoch_file.with_name(f".{self.epoch_file.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            self.epoch_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(secrets.token_hex(8))
            os.replace(tmp, self.epoch_file)  # a new file: a new inode, whatever the clock's resolution
        except OSError as exc:
            log.warning(
                "cannot replace %s (%s): other processes honour cached credentials for up to %.0f s",
                self.epoch_file,
                exc,
                self.ttl_s,
            )
            tmp.unlink(missing_ok=True)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    store: EvidenceStore
    read_factory: sessionmaker[Session]
    grid_cache: GridCache = field(default_factory=GridCache)
    principals: PrincipalCache = field(default_factory=PrincipalCache)

    @property
    def login_policy(self) -> LoginPolicy:
        return LoginPolicy(self.settings.login_max_failures, self.settings.login_window_s)

    @property
    def policy(self) -> MergePolicy:
        return MergePolicy(self.settings.merge_radius_m, self.settings.merge_window_h)

    @classmethod
    def build(cls, settings: Settings, *, migrate_db: bool = True) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.url)
        if migrate_db:
            migrate(engine)
        return cls(
            settings=settings,
            engine=engine,
            factory=make_sessionmaker(engine),
            store=EvidenceStore(settings.evidence_dir),
            read_factory=make_sessionmaker(engine, readonly=True),
            principals=PrincipalCache(
                ttl_s=settings.auth_cache_s, epoch_file=settings.data_dir / CREDENTIALS_EPOCH_FILE
            ),
        )

    def close(self) -> None:
        self.engine.dispose()
