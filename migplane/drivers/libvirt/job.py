"""One outgoing migration: the blocking migrateToURI3 call in its own thread.

The flow wants ``live_migration()`` to return at once and then polls, so the
call runs in a thread and this object keeps what the poller needs: the
call's outcome (libvirt's error kept as is), the last statistics seen, and
the requests (downtime, abort, force-complete) that arrived before libvirt
had a job to apply them to.
"""

import logging
import threading
import time

import libvirt

LOG = logging.getLogger(__name__)


class MigrationJob:
    def __init__(self, dom, plan, instance):
        self.dom = dom
        self.plan = plan
        self.instance = instance
        self.uuid = dom.UUIDString()
        self.started_at = None
        #: The libvirtError (or other exception) the call ended with; None on success.
        self.error = None
        self.abort_requested = False
        #: The guest was paused by force-complete, so rollback must resume it.
        self.paused_by_us = False
        self.postcopy = False
        self.last_stats = {}
        #: The JobProgress once the call ended (computed once, then kept).
        self.final = None
        #: Requests to apply once the libvirt job exists: name -> argument.
        self.pending = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"migrate-{instance}")

    def start(self):
        self.started_at = time.monotonic()
        self._thread.start()

    def _run(self):
        LOG.info("Migrating %s: %s", self.instance, self.plan.describe())
        try:
            self.dom.migrateToURI3(self.plan.dconnuri, self.plan.call_params(),
                                   self.plan.flags)
        except libvirt.libvirtError as err:
            LOG.warning("Migration of %s failed: %s", self.instance, err)
            self.error = err
        except Exception as err:  # the thread must always record an outcome
            LOG.exception("Migration of %s failed", self.instance)
            self.error = err
        else:
            LOG.info("Migration of %s completed", self.instance)
        finally:
            self._done.set()

    @property
    def done(self):
        return self._done.is_set()

    @property
    def succeeded(self):
        return self.done and self.error is None

    def wait(self, timeout=None):
        """Wait for the call to return; True when it has."""
        return self._done.wait(timeout)
