"""A hung hypervisor daemon cannot hang a migration (core.deadlines), on real libvirt.

The destination's libvirtd is stopped (SIGSTOP) as the flow enters
``pre_live_migration`` of a block migration, whose disk pre-creation talks to
that daemon: the step blocks for good, and the flow must end with the typed
timeout naming the step and the host, the guest still running on the source.
The daemon is continued (SIGCONT) whatever happens.
"""

import logging
import os
import signal
import time

import pytest

from migplane.core import events
from migplane.core import exception
from migplane.core import flow
from migplane.lab import guest

pytestmark = pytest.mark.lab

#: Seconds the flow waits for one step: small, so the hang ends quickly.
STEP_DEADLINE = 3


def test_a_stopped_destination_daemon_ends_in_the_step_timeout(drv_lab, lv, lab_guest,
                                                              pair, caplog):
    a, b = drv_lab.hosts
    disk = guest.create_disk(a, lab_guest, size_mib=16)
    source, dest = pair(my_ip=b.mig_ip, step_deadline=STEP_DEADLINE)
    watcher = lv.start_guest(drv_lab, lab_guest, disk=disk)
    migration = flow.LiveMigration(lab_guest, source, dest, source.settings.migration,
                                   block_migration=True)
    stopped = []

    def stop_daemon_at_pre_live_migration(event):
        if event.kind == events.STEP and event.message == "pre_live_migration" \
                and not stopped:
            os.kill(b.libvirtd_pid, signal.SIGSTOP)
            stopped.append(b.libvirtd_pid)

    migration.subscribe(stop_daemon_at_pre_live_migration)
    try:
        with caplog.at_level(logging.WARNING, logger="migplane.core.deadlines"):
            with pytest.raises(exception.MigplaneError) as info:
                migration.run()
            assert stopped, "the flow never reached pre_live_migration"
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    err = info.value
    assert isinstance(err, exception.StepTimedOut), err
    assert (err.step, err.host) == ("pre_live_migration", "host-b")
    assert "pre_live_migration" in str(err) and "host-b" in str(err)
    # The daemon answers again: the hung step's late answer is logged and ignored.
    with caplog.at_level(logging.WARNING, logger="migplane.core.deadlines"):
        give_up = time.monotonic() + 60
        while "pre_live_migration on host-b answered" not in caplog.text:
            assert time.monotonic() < give_up, "the hung step never answered"
            time.sleep(0.1)
    assert lv.domain_state(a, lab_guest) == (1, True)   # still running on host-a
    assert lv.domain_state(b, lab_guest) is None
    watcher.wait_ticks(5, host="host-a", timeout=30)
    watcher.stop()
    assert not watcher.ticks("host-b")
