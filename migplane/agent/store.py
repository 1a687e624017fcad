"""Migration records on disk: one SQLite file under ``[agent] state_dir``.

A source agent that dies mid-migration must find its records again when it
starts, so every record is written here at each step (and its progress at
most every ``PROGRESS_WRITE_S``). The file is opened in WAL mode, written in
short transactions, and never served over the network; stdlib ``sqlite3``
only. A file that cannot be read is moved aside (loudly) and a new one
started, so a corrupt database never stops the agent from serving.
"""

import json
import logging
import os
import sqlite3
import threading
import time

LOG = logging.getLogger(__name__)
FILENAME = "migrations.sqlite3"
SCHEMA_VERSION = 1
MEMORY = ":memory:"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS migrations (
    id TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    finished REAL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS migrations_status ON migrations (status);
CREATE INDEX IF NOT EXISTS migrations_created ON migrations (created);
"""


class StoreError(Exception):
    """The database cannot be used; the message says which file and why."""


class RecordStore:
    """Records as JSON rows, keyed by migration id; thread-safe.

    :param state_dir: the directory of the file, created 0700 if missing;
        None keeps the records in memory only (not durable).
    """

    def __init__(self, state_dir):
        self.path = MEMORY if state_dir is None else os.path.join(state_dir, FILENAME)
        #: Where an unreadable file was moved, and why it was (None when fine).
        self.moved_aside = None
        self.error = None
        self._lock = threading.Lock()
        if state_dir is not None:
            try:
                os.makedirs(state_dir, mode=0o700, exist_ok=True)
            except OSError as err:
                self.error = "state directory %s: %s" % (state_dir, err)
                LOG.error("Cannot use the state directory %s (%s): migration records are "
                          "kept in memory only until this is fixed", state_dir, err)
                self.path = MEMORY
        try:
            self._db = self._open()
        except (sqlite3.Error, StoreError) as err:
            if self.path == MEMORY:
                raise
            self.error = "%s: %s" % (self.path, err)
            try:
                self.moved_aside = self._move_aside(err)
                self._db = self._open()
            except (OSError, sqlite3.Error, StoreError) as again:
                LOG.error("Cannot start a new database at %s either (%s): migration "
                          "records are kept in memory only until this is fixed",
                          self.path, again)
                self.path = MEMORY
                self._db = self._open()

    def _open(self):
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                             timeout=10)
        try:
            if self.path != MEMORY:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
            check = db.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise StoreError("integrity check says %r" % (check,))
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise StoreError("schema version %s, this agent writes version %d"
                                 % (row[0], SCHEMA_VERSION))
            for (text,) in db.execute("SELECT record FROM migrations"):
                json.loads(text)
        except Exception:
            db.close()
            raise
        return db

    def _move_aside(self, err):
        aside = "%s.corrupt-%s" % (self.path, time.strftime("%Y%m%dT%H%M%S"))
        LOG.error("Migration records in %s cannot be read (%s): moved aside to %s; "
                  "starting an empty database. Records of migrations before now are "
                  "only in that file.", self.path, err, aside)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, aside + suffix)
        return aside

    @property
    def durable(self):
        return self.path != MEMORY

    def save(self, data):
        """Insert or replace the record ``data`` (a dict from ``to_dict``)."""
        text = json.dumps(data, sort_keys=True)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO migrations (id, instance, status, created, "
                "finished, record) VALUES (?, ?, ?, ?, ?, ?)",
                (data["id"], data["instance"], data["status"], data["created"],
                 data.get("finished"), text))

    def load_all(self):
        """Every record, oldest first; rows that do not parse are skipped, loudly."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, record FROM migrations ORDER BY created").fetchall()
        records = []
        for migration_id, text in rows:
            try:
                records.append(json.loads(text))
            except ValueError as err:
                LOG.error("Record %s in %s cannot be read: %s", migration_id, self.path,
                          err)
        return records

    def trim(self, keep, max_age_s=None, active=()):
        """Delete finished records beyond the newest ``keep`` or older than ``max_age_s``.

        Records whose status is in ``active`` are always kept. Returns the ids removed.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT id, status, created FROM migrations ORDER BY created DESC"
            ).fetchall()
            now = time.time()
            done = [(mid, created) for mid, status, created in rows if status not in active]
            gone = [mid for i, (mid, created) in enumerate(done)
                    if i >= keep or (max_age_s and now - created > max_age_s)]
            for mid in gone:
                self._db.execute("DELETE FROM migrations WHERE id = ?", (mid,))
        return gone

    def close(self):
        with self._lock:
            self._db.close()
