"""The fake driver: a deterministic, simulated driver for testing the core.

It is an ordinary entry point (``fake``), selected by configuration like any
driver, and never more permissive than the libvirt driver.
"""
