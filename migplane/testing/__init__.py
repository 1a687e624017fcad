"""Helpers for tests of migplane and of the stacks and drivers that embed it.

* :func:`host_conf`: a parsed ``ConfigOpts`` for one host with every migplane
  option registered, so a test states only what differs.
* :mod:`migplane.testing.fixtures`: ``fixtures.Fixture`` classes in the style
  of oslo.messaging's ``ConfFixture`` (a host's configuration, a simulated
  world of fake hosts), each cleaning up after itself.
* :mod:`migplane.testing.conformance`: the conformance kit a driver author
  runs against their driver with pytest.

The last two need the ``testing`` extra (``fixtures``, ``pytest``). Under
pytest, the kit is registered for assertion rewriting, so that its failures
show the values compared, wherever migplane is installed.
"""

import sys
from typing import Any
from typing import Iterable
from typing import Optional

from oslo_config import cfg

from migplane import opts
from migplane.core import opts as core_opts

if "pytest" in sys.modules:
    sys.modules["pytest"].register_assert_rewrite("migplane.testing.conformance")


def host_conf(hostname: str, my_live_migration_ip: Optional[str] = None,
              config_files: Iterable[str] = (), **live_migration: Any) -> cfg.ConfigOpts:
    """A ``ConfigOpts`` for host ``hostname``; keywords go to ``[live_migration]``.

    ``config_files`` are read first, as a deployment reads its own. Driver
    options are then set with ``conf.set_override(name, value, group)``.
    """
    conf = cfg.ConfigOpts()
    conf(args=[], project="migplane", default_config_files=list(config_files))
    opts.register_opts(conf)
    conf.set_override("hostname", hostname, group=core_opts.GROUP)
    if my_live_migration_ip:
        conf.set_override("my_live_migration_ip", my_live_migration_ip)
    for name, value in live_migration.items():
        conf.set_override(name, value, group=core_opts.GROUP)
    return conf
