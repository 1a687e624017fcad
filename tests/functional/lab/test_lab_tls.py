"""setup_tls() issues certificates QEMU's native TLS migration accepts, and
wrong-name certificates make it fail (what negative tests need)."""

import libvirt
import pytest

from migplane.lab import guest
from migplane.lab.console import ConsoleWatcher

pytestmark = pytest.mark.lab


def _migrate_tls(a, b, name, tls_destination):
    conn = libvirt.open(a.uri)
    try:
        conn.lookupByName(name).migrateToURI3(b.tcp_uri, {
            libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{b.mig_ip}",
            libvirt.VIR_MIGRATE_PARAM_TLS_DESTINATION: tls_destination,
        }, libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER | libvirt.VIR_MIGRATE_TLS)
    finally:
        conn.close()


def test_tls_migration_over_the_migration_plane(lab, kernel):
    a, b = lab.hosts
    name = "g-tls"
    try:
        used = lab.setup_tls()
        assert used == {"host-a": ["host-a"], "host-b": ["host-b"]}
        for h in lab.hosts:
            assert {p.name for p in h.pki_dir.iterdir()} >= {
                "ca-cert.pem", "server-cert.pem", "server-key.pem",
                "client-cert.pem", "client-key.pem"}
        with ConsoleWatcher.for_domain(lab.hosts, name) as w:
            guest.define_guest(a, name, kernel,
                               cmdline=guest.cmdline(tick_ms=50, stamp_mib=8))
            w.wait_ticks(3, timeout=120)
            # the certificate names host-b; the data goes to its migration IP
            _migrate_tls(a, b, name, "host-b")
            w.wait_ticks(3, host="host-b", timeout=30)
            assert len(w.boot_ids()) == 1 and w.counter_continuous()

            # a certificate for another name is refused by the source's check
            lab.setup_tls({"host-a": ["wrong.example"]})
            with pytest.raises(libvirt.libvirtError):
                _migrate_tls(b, a, name, "host-a")
            w.wait_ticks(3, host="host-b", timeout=30)     # still running on B
            # ...and accepted once it carries the migration address
            lab.setup_tls({"host-a": ["host-a", a.mig_ip]})
            _migrate_tls(b, a, name, a.mig_ip)
            w.wait_ticks(3, host="host-a", timeout=120)
        assert len(w.boot_ids()) == 1 and w.counter_continuous() and w.max_bad() == 0
    finally:
        lab.setup_tls()
        for h in lab.hosts:
            guest.destroy_guest(h, name)
