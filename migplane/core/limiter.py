"""Per-host limit on concurrent live migrations.

Like Nova's ``max_concurrent_live_migrations``, but a host over its limit
either queues the migration or refuses it at once, as configured
(``when_busy``). One limiter is shared by every flow of a process (an agent,
an embedding stack); a migration holds a slot on its source and on its
destination for its whole run.
"""

import contextlib
import threading
import time
from typing import Callable
from typing import Dict
from typing import Iterable
from typing import Iterator
from typing import List
from typing import Optional

from migplane.core import exception
from migplane.core import settings as settings_mod


class HostLimiter:
    def __init__(self, concurrency: settings_mod.ConcurrencySettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = concurrency
        self._clock = clock
        self._cond = threading.Condition()
        self._running: Dict[str, int] = {}
        self._peak: Dict[str, int] = {}

    @property
    def limit(self) -> int:
        return self._settings.max_concurrent

    def running(self, host: str) -> int:
        with self._cond:
            return self._running.get(host, 0)

    def peak(self, host: str) -> int:
        """The most migrations ``host`` ever ran at once (for tests and benchmarks)."""
        with self._cond:
            return self._peak.get(host, 0)

    def _full(self, hosts: Iterable[str]) -> bool:
        return bool(self.limit) and any(self._running.get(h, 0) >= self.limit for h in hosts)

    def _busy_error(self, hosts: Iterable[str]) -> exception.TooManyMigrations:
        host = next(h for h in hosts if self._running.get(h, 0) >= self.limit)
        return exception.TooManyMigrations(host=host, running=self._running[host],
                                           limit=self.limit)

    def acquire(self, *hosts: str) -> None:
        """Take a slot on every host in ``hosts`` at once, or raise TooManyMigrations."""
        names: List[str] = sorted(set(hosts))
        timeout = self._settings.busy_timeout or None
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while self._full(names):
                if self._settings.when_busy == "refuse":
                    raise self._busy_error(names)
                remaining: Optional[float] = (None if deadline is None
                                              else deadline - self._clock())
                if remaining is not None and remaining <= 0:
                    raise self._busy_error(names)
                self._cond.wait(remaining)
            for host in names:
                self._running[host] = self._running.get(host, 0) + 1
                self._peak[host] = max(self._peak.get(host, 0), self._running[host])

    def release(self, *hosts: str) -> None:
        with self._cond:
            for host in sorted(set(hosts)):
                self._running[host] -= 1
            self._cond.notify_all()

    @contextlib.contextmanager
    def slot(self, *hosts: str) -> Iterator[None]:
        self.acquire(*hosts)
        try:
            yield
        finally:
            self.release(*hosts)
