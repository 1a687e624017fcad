"""The driver-agnostic core of migplane.

It owns the pre-migration data contract (``migrate_data``), the URI policy
(``uri``), the driver API (``driver``), driver loading (``loader``) and the
flow that runs a migration across two drivers (``flow``). It imports no
driver and does nothing at import time.
"""
