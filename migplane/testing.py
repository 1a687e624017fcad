"""Helpers for tests of migplane and of the stacks that embed it.

Like oslo.messaging's ``ConfFixture``: a parsed ``ConfigOpts`` for one host,
with every migplane option registered, so a test states only what differs.
"""

from oslo_config import cfg

from migplane import opts
from migplane.core import opts as core_opts


def host_conf(hostname, my_live_migration_ip=None, **live_migration):
    """A ``ConfigOpts`` for host ``hostname``; keywords go to ``[live_migration]``.

    Driver options are then set with ``conf.set_override(name, value, group)``.
    """
    conf = cfg.ConfigOpts()
    conf(args=[], project="migplane", default_config_files=[])
    opts.register_opts(conf)
    conf.set_override("hostname", hostname, group=core_opts.GROUP)
    if my_live_migration_ip:
        conf.set_override("my_live_migration_ip", my_live_migration_ip)
    for name, value in live_migration.items():
        conf.set_override(name, value, group=core_opts.GROUP)
    return conf
