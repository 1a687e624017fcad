"""The fake driver passes the conformance kit it is the model for."""

from migplane.testing import conformance


class TestFakeDriverConformance(conformance.DriverConformance):
    driver_name = "fake"
    adapter_class = conformance.fake_adapter_class()
