"""QEMU native TLS while the data connection dials the inbound IP address.

The hosts' certificates (from the lab's test CA) carry their host names, not
their migration addresses: the migration succeeds only because the driver
passes the host name as ``tls.destination``; a certificate for another name
must fail clearly, with the guest still running on the source.
"""

import pytest

from migplane.core import exception
from migplane.core import flow

pytestmark = pytest.mark.lab


@pytest.fixture
def tls_lab(drv_lab):
    drv_lab.setup_tls()
    yield drv_lab
    drv_lab.setup_tls()   # the hosts' own names again, whatever a test issued


def test_native_tls_verifies_the_host_name_while_dialing_the_ip(
        tls_lab, lv, lab_guest, pair, traffic):
    a, b = tls_lab.hosts
    assert tls_lab.tls_names["host-b"] == ["host-b"]   # no IP in the certificate
    source, dest = pair(my_ip=b.mig_ip, with_native_tls=True)
    watcher = lv.start_guest(tls_lab, lab_guest, dirty_mib=16, rate_mib_s=20)
    with traffic() as sent:
        result = flow.LiveMigration(lab_guest, source, dest,
                                    source.settings.migration).run()
    assert result.uris.data_uri == "tcp://198.51.100.12"
    assert result.uris.tls_destination == "host-b"
    assert sent.share("migration") >= 0.95, sent.sent
    watcher.wait_ticks(5, host="host-b", timeout=30)
    watcher.stop()
    assert lv.domain_state(a, lab_guest) is None
    assert lv.domain_state(b, lab_guest) == (1, True)
    lv.assert_counter_continues(watcher, "host-a", "host-b")


def test_native_tls_fails_clearly_when_the_name_does_not_match(
        tls_lab, lv, lab_guest, pair):
    a, b = tls_lab.hosts
    tls_lab.setup_tls(names={"host-b": ["someone-else.example"]})
    source, dest = pair(my_ip=b.mig_ip, with_native_tls=True)
    watcher = lv.start_guest(tls_lab, lab_guest, dirty_mib=16, rate_mib_s=20)
    with pytest.raises(exception.MigrationError) as err:
        flow.LiveMigration(lab_guest, source, dest, source.settings.migration).run()
    message = str(err.value)
    assert "TLS" in message and "verified against 'host-b'" in message, message
    assert err.value.result.running_on == "host-a"
    watcher.wait_ticks(5, host="host-a", timeout=30)
    watcher.stop()
    assert lv.domain_state(a, lab_guest) == (1, True)
    assert lv.domain_state(b, lab_guest) is None
    lv.assert_counter_continues(watcher, "host-a")
