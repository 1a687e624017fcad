"""Migration records on disk: one SQLite file under ``[agent] state_dir``.

A source agent that dies mid-migration must find its records again when it
starts, so every record is written here at each step (and its progress at
most every ``PROGRESS_WRITE_S``). The file is opened in WAL mode, written in
short transactions, and never served over the network; stdlib ``sqlite3``
only. A file that cannot be read is moved aside (loudly) and a new one
started, so a corrupt database never stops the agent from serving; a row
that does not load (not JSON, or not a record) is moved to the ``quarantine``
table, logged, and its migration reported as unresolved. The same file holds
the slots peers took here for incoming migrations (``slots``), so a
destination agent that restarts still serves their post and rollback steps,
and still refuses the id of a slot released before.

The agent runs as root and the records name guests and hosts: the directory
is 0700 and the files 0600. A directory others can read is refused at start;
files this agent owns are tightened.
"""

import json
import logging
import os
import sqlite3
import stat
import threading
import time

from migplane.agent import errors

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
CREATE TABLE IF NOT EXISTS quarantine (
    id TEXT NOT NULL,
    moved REAL NOT NULL,
    reason TEXT NOT NULL,
    record TEXT
);
CREATE TABLE IF NOT EXISTS slots (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    updated REAL NOT NULL,
    record TEXT NOT NULL
);
"""
#: Released slot ids kept (to refuse their re-use) beyond the held ones.
KEEP_RELEASED = 10000


class StoreError(Exception):
    """The database cannot be used; the message says which file and why."""


class UnsafeStateDir(StoreError):
    """The state directory is open to others: the agent refuses to start."""


def check_state_dir(state_dir):
    """Create ``state_dir`` 0700, or refuse an existing one others can use."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    info = os.stat(state_dir)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeStateDir("state directory %s is not a directory" % state_dir)
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise UnsafeStateDir(
            "state directory %s is mode %o: others may read the migration records; "
            "chmod 700 it" % (state_dir, stat.S_IMODE(info.st_mode)))


def _private_file(path):
    """Create ``path`` 0600 if missing (SQLite gives -wal and -shm its mode);
    tighten it (and its -wal, -shm) when looser."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.close(fd)
    for suffix in ("", "-wal", "-shm"):
        try:
            mode = stat.S_IMODE(os.lstat(path + suffix).st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            LOG.warning("%s was mode %o: made 0600", path + suffix, mode)
            os.chmod(path + suffix, 0o600)


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
                check_state_dir(state_dir)
                _private_file(self.path)
            except UnsafeStateDir:
                raise
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
        if self.path != MEMORY:
            _private_file(self.path)
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
        if os.path.exists(self.path):
            raise StoreError("%s is still there after moving it aside" % self.path)
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

    def load_all(self, check=None, bad=None):
        """Every record, oldest first.

        ``check(data)`` raises ValueError for a record that cannot be used. A
        row that is not JSON, or fails ``check``, is moved to the quarantine
        table (loudly) and appended to ``bad`` as ``(id, instance, reason)``,
        so that its migration is reported, never dropped.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT id, instance, record FROM migrations ORDER BY created").fetchall()
        records = []
        for migration_id, instance, text in rows:
            try:
                data = json.loads(text)
                if check is not None:
                    check(data)
                if not isinstance(data, dict) or data.get("id") != migration_id:
                    raise ValueError("the record is not the one of migration %r"
                                     % (migration_id,))
                records.append(data)
            except (ValueError, TypeError, KeyError, RecursionError) as err:
                reason = "%s: %s" % (type(err).__name__, str(err)[:300])
                LOG.error("Record %r in %s cannot be used (%s): moved to its quarantine "
                          "table; the migration is reported unresolved",
                          errors.printable(migration_id), self.path, errors.printable(reason))
                self._quarantine(migration_id, text, reason)
                if bad is not None:
                    bad.append((str(migration_id), str(instance), reason))
        return records

    def _quarantine(self, migration_id, text, reason):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT INTO quarantine VALUES (?, ?, ?, ?)",
                                 (str(migration_id), time.time(), reason,
                                  text if isinstance(text, str) else repr(text)))
                self._db.execute("DELETE FROM migrations WHERE id = ?", (migration_id,))
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise

    # -- slots of incoming migrations ---------------------------------------------

    def save_slot(self, data, status):
        """Insert or replace slot ``data`` (a dict with its ``migration_id``)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO slots (id, status, updated, record) "
                "VALUES (?, ?, ?, ?)",
                (data["migration_id"], status, time.time(), json.dumps(data,
                                                                       sort_keys=True)))
            if status == "released":
                self._db.execute(
                    "DELETE FROM slots WHERE status = 'released' AND id NOT IN (SELECT id "
                    "FROM slots WHERE status = 'released' ORDER BY updated DESC LIMIT ?)",
                    (KEEP_RELEASED,))

    def load_slots(self):
        """``(status, data)`` of every slot row that loads; the others are dropped, loudly."""
        with self._lock:
            rows = self._db.execute("SELECT id, status, record FROM slots").fetchall()
        found = []
        for slot_id, status, text in rows:
            try:
                data = json.loads(text)
                if not isinstance(data, dict) or data.get("migration_id") != slot_id:
                    raise ValueError("not the slot %r" % (slot_id,))
                found.append((status, data))
            except (ValueError, TypeError, RecursionError) as err:
                LOG.error("Slot %r in %s cannot be used (%s): dropped",
                          errors.printable(slot_id), self.path, errors.printable(err))
                with self._lock:
                    self._db.execute("DELETE FROM slots WHERE id = ?", (slot_id,))
        return found

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
