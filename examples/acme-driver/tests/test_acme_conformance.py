"""The acme driver keeps migplane's driver contract (the conformance kit)."""

import json

from acme_migplane import driver as acme_driver

from migplane.core import loader
from migplane.testing import conformance


class AcmeAdapter(conformance.fake_adapter_class()):
    """Two hosts of a simulated world, configured to load the ``acme`` driver."""

    def host_conf(self, role, inbound=True):
        conf = super().host_conf(role, inbound)
        conf.set_override("driver", "acme", group="live_migration")
        return conf


class TestAcmeConformance(conformance.DriverConformance):
    driver_name = "acme"
    adapter_class = AcmeAdapter


def test_installed_as_its_own_distribution():
    assert "acme" in loader.installed_drivers()


def test_the_audit_trail_records_the_steps(tmp_path):
    adapter = AcmeAdapter()
    adapter.setup()
    try:
        conf = adapter.host_conf("source")
        log = tmp_path / "audit.jsonl"
        conf.register_opts(acme_driver.acme_opts, group=acme_driver.GROUP)
        conf.set_override("audit_log", str(log), group="driver_acme")
        drv = loader.load_driver(conf)
        guest = adapter.create_guest()
        drv.get_instance_info(guest)
        assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [
            "get_instance_info"]
    finally:
        adapter.cleanup()
