"""What migration and evacuation records share: their numbered events, and an
index of the records an agent keeps.

Readers follow a record with ``GET ...?since=N`` and get the events numbered
after ``N``; the record's ``last_event`` is the number they ask with next.
Both kinds of record use :class:`EventLog`, and both registries
:class:`RecordIndex`, so that a fix to either reaches both.
"""

import collections
import threading


class EventLog:
    """The last ``maxlen`` events of one record, each numbered (``seq``) in order.

    Not locked: its record holds its own lock around every change and read.
    """

    def __init__(self, maxlen):
        self._events = collections.deque(maxlen=maxlen)
        #: The number of the newest event (0 before any).
        self.last = 0

    def append(self, data):
        """Number ``data`` (a dict) and keep it; returns it."""
        self.last += 1
        data["seq"] = self.last
        self._events.append(data)
        return data

    def replace_last_of(self, kind, data):
        """Like :meth:`append`, but drop the newest event first when it is of
        ``kind`` (a run of progress events keeps only its latest)."""
        if self._events and self._events[-1].get("kind") == kind:
            self._events.pop()
        return self.append(data)

    def since(self, seq=None):
        """The events numbered after ``seq`` (all when None)."""
        return [e for e in self._events if seq is None or e["seq"] > seq]

    def restore(self, events, last):
        """Events read back from storage, and the newest number given out."""
        self._events.extend(events or ())
        self.last = last or 0

    def any(self, kind):
        return any(e.get("kind") == kind for e in self._events)


class RecordIndex:
    """The records an agent keeps, oldest first: every active one, and the last
    ``history`` that ended (none older than ``max_age_s``, when given).

    Records need ``id``, ``created`` and ``active``.
    """

    def __init__(self, history, max_age_s=None):
        self._records = collections.OrderedDict()
        self._history = history
        self._max_age_s = max_age_s
        self._lock = threading.Lock()

    def _keep(self, record, now):
        """Add ``record`` and drop what is beyond the history; call with the lock."""
        self._records[record.id] = record
        self._trim(now)

    def _trim(self, now):
        finished = [k for k, r in self._records.items() if not r.active]
        while finished and (len(self._records) > self._history or (
                self._max_age_s and now - self._records[finished[0]].created
                > self._max_age_s)):
            self._records.pop(finished.pop(0))

    def find(self, record_id):
        with self._lock:
            return self._records.get(record_id)

    def all(self):
        with self._lock:
            return list(self._records.values())

    def active(self):
        return [r for r in self.all() if r.active]
