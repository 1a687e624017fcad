"""The libvirt driver passes the conformance kit on the lab.

The same kit a third-party driver runs (``migplane.testing.conformance``),
against real libvirtds and TCG guests of the session lab: two hosts, the
destination's ``my_live_migration_ip`` on the migration plane.
"""

import pytest

from migplane import testing
from migplane.core import units
from migplane.testing import conformance

LIBVIRT_RUNNING, LIBVIRT_PAUSED = 1, 3
class LabAdapter(conformance.Adapter):
    job_timeout = 120.0

    def __init__(self, lab, lv, guest_name):
        self.lab, self.lv, self.name = lab, lv, guest_name
        self.roles = dict(zip((conformance.SOURCE, conformance.DESTINATION), lab.hosts,
                              strict=False))
        self.inbound_address = self.roles[conformance.DESTINATION].mig_ip
        self.watcher = None
        self.disk = self.written = None

    def cleanup(self):
        if self.watcher is not None:
            self.watcher.stop()

    def host_conf(self, role, inbound=True):
        from migplane.drivers.libvirt import opts

        host = self.roles[role]
        ip = host.mig_ip if role == conformance.DESTINATION and inbound else None
        conf = testing.host_conf(host.name, ip, poll_interval=0.1)
        opts.register_opts(conf)
        conf.set_override("connection_uri", host.uri, group=opts.GROUP)
        conf.set_override("netns", host.netns, group=opts.GROUP)
        return conf

    def create_guest(self):
        self.watcher = self.lv.start_guest(self.lab, self.name, dirty_mib=8,
                                           rate_mib_s=10)
        self.sent_before = self.roles[conformance.SOURCE].counters()
        return self.name

    def create_guest_with_disk(self):
        from migplane.lab import guest

        source = self.roles[conformance.SOURCE]
        self.disk = guest.create_disk(source, self.name, size_mib=16)
        self.watcher = self.lv.start_guest(self.lab, self.name, disk=self.disk,
                                           disk_write=True)
        self.watcher.wait_for(lambda w: "host-a" in w.disk_sums(), 30, "MPDISK")
        self.written = self.watcher.disk_sums()["host-a"]
        self.sent_before = source.counters()
        return self.name

    def observe_transfer(self, instance):
        """What host-a's interfaces carried since the guest started: the bulk
        stream rode the plane that carried most of it, and host-b has one
        address on each plane."""
        source = self.roles[conformance.SOURCE]
        dest = self.roles[conformance.DESTINATION]
        after = source.counters()
        sent = {plane: after[plane]["tx_bytes"] - self.sent_before[plane]["tx_bytes"]
                for plane in ("management", "migration")}
        unseen = {"data_port": "interface counters do not see ports",
                  "control_host": "libvirtd's peer-to-peer connection closes with the job",
                  "tunnelled": "the lab does not tell a tunnelled stream from a direct one",
                  "tls": "the lab does not look into the stream",
                  "postcopy": "the lab does not record the job's phases",
                  "disks_copied": "the guest has no local disk"}
        seen = {}
        if self.disk is not None:  # the block the guest wrote, read on host-b's copy
            from migplane.lab import guest

            seen["disks_copied"] = guest.disk_checksum(dest, self.disk) == self.written
            del unseen["disks_copied"]
        plane = max(sent, key=sent.get)
        if sent[plane] < units.MiB:  # zero pages are not sent: a little is enough
            unseen["data_address"] = "no plane carried the guest's memory (%s)" % sent
            return conformance.Observed(unobserved=unseen, **seen)
        return conformance.Observed(
            data_address=dest.mig_ip if plane == "migration" else dest.mgmt_ip,
            unobserved=unseen, **seen)

    def cannot_run(self, capability):
        if capability == "native_tls":
            return ("the lab's hosts have no TLS certificates here "
                    "(test_libvirt_tls.py sets them up for its own tests)")
        return None

    def inject_failure(self, role, step):
        if (role, step) != (conformance.DESTINATION, "pre_live_migration"):
            return "the lab adapter makes only the destination's pre_live_migration fail"
        # the inbound address's link is down: the driver must refuse it, typed
        self.roles[role].set_link("migration", False)
        return None

    def runs_on(self, instance):
        return sorted(role for role, host in self.roles.items()
                      if (self.lv.domain_state(host, instance) or (None,))[0]
                      in (LIBVIRT_RUNNING, LIBVIRT_PAUSED))

    def leftovers(self, role, instance):
        state = self.lv.domain_state(self.roles[role], instance)
        if state is not None and state[0] not in (LIBVIRT_RUNNING, LIBVIRT_PAUSED):
            return ["domain defined (state %d)" % state[0]]
        return []

    def migration_settings(self, settings):
        # 2 MiB/s for a 64 MiB guest dirtying memory: an abort always arrives first
        return settings.replace(bandwidth_mib=2)


class TestLibvirtConformance(conformance.DriverConformance):
    driver_name = "libvirt"

    @pytest.fixture
    def adapter(self, drv_lab, lv, lab_guest):
        adapter = LabAdapter(drv_lab, lv, lab_guest)
        try:
            yield adapter
        finally:
            adapter.cleanup()
