"""Public test fixtures, in the style of oslo.messaging's ``ConfFixture``.

``fixtures.Fixture`` classes an embedding stack (or a driver author) uses with
``testtools``' ``useFixture`` or as context managers; each undoes what it did.

* :class:`HostConfFixture`: one host's ``ConfigOpts`` with every migplane
  option registered.
* :class:`FakeWorldFixture`: a simulated data centre of fake hosts (the
  ``fake`` driver's world) under a name of its own, with drivers loaded by
  entry point exactly as production loads them, and flows on its simulated
  clock. Reset on cleanup.
"""

import itertools
import os
from typing import TYPE_CHECKING
from typing import Any
from typing import Dict
from typing import Iterable
from typing import Optional

import fixtures
from oslo_config import cfg

from migplane import testing
from migplane.core import driver as driver_mod
from migplane.core import flow
from migplane.core import loader
from migplane.core import opts as core_opts

if TYPE_CHECKING:
    from migplane.drivers.fake import world as world_mod

_names = itertools.count(1)


class HostConfFixture(fixtures.Fixture):
    """A parsed ``ConfigOpts`` for host ``hostname``, all migplane options registered.

    ``config(**kw)`` overrides ``[live_migration]`` options (``group=`` for
    another group); every override is cleared on cleanup.
    """

    #: The host's configuration, once set up.
    conf: cfg.ConfigOpts

    def __init__(self, hostname: str, my_live_migration_ip: Optional[str] = None,
                 config_files: Iterable[str] = (), **live_migration: Any) -> None:
        super().__init__()
        self.hostname = hostname
        self.my_live_migration_ip = my_live_migration_ip
        self.config_files = tuple(config_files)
        self.live_migration = live_migration

    def _setUp(self) -> None:
        self.conf = testing.host_conf(self.hostname, self.my_live_migration_ip,
                                      self.config_files, **self.live_migration)
        self.addCleanup(self.conf.reset)
        self.addCleanup(self.conf.clear_override, "hostname", core_opts.GROUP)

    def config(self, group: Optional[str] = core_opts.GROUP, **overrides: Any) -> None:
        """Override options of ``group`` (``None``: ``[DEFAULT]``) until cleanup."""
        for name, value in overrides.items():
            self.conf.set_override(name, value, group=group)
            self.addCleanup(self.conf.clear_override, name, group)


class FakeWorldFixture(fixtures.Fixture):
    """A fake world with hosts, and drivers for them loaded through the loader.

    :param hosts: ``{name: {"mgmt": address, "mig": address or list}}``;
        default: ``host-a`` and ``host-b`` on 192.0.2.0/24 and 198.51.100.0/24.
    """

    DEFAULT_HOSTS = {
        "host-a": {"mgmt": "192.0.2.11", "mig": ["198.51.100.11", "2001:db8:2::11"]},
        "host-b": {"mgmt": "192.0.2.12", "mig": ["198.51.100.12", "2001:db8:2::12"]},
    }

    #: The simulated world, once set up.
    world: "world_mod.FakeWorld"

    def __init__(self, hosts: Optional[Dict[str, Dict[str, Any]]] = None) -> None:
        super().__init__()
        self.hosts = dict(hosts or self.DEFAULT_HOSTS)
        self.name = "fixture-%d-%d" % (os.getpid(), next(_names))

    def _setUp(self) -> None:
        from migplane.drivers.fake import world as world_mod

        world_mod.reset_world(self.name)
        self.world = world_mod.get_world(self.name)
        self.addCleanup(world_mod.reset_world, self.name)
        for host, spec in self.hosts.items():
            self.world.add_host(host, **spec)

    def conf(self, host: str, my_live_migration_ip: Optional[str] = None,
             **live_migration: Any) -> cfg.ConfigOpts:
        """The ``ConfigOpts`` of fake host ``host`` (with the fake driver selected)."""
        live_migration.setdefault("driver", "fake")
        conf = self.useFixture(HostConfFixture(host, my_live_migration_ip,
                                               **live_migration)).conf
        conf.set_override("world", self.name, group="driver_fake")
        return conf

    def driver(self, host: str, my_live_migration_ip: Optional[str] = None,
               **live_migration: Any) -> driver_mod.MigrationDriver:
        """The fake driver of ``host``, loaded by entry point as production does."""
        return loader.load_driver(self.conf(host, my_live_migration_ip, **live_migration))

    def migration(self, instance: str, source: driver_mod.MigrationDriver,
                  destination: driver_mod.MigrationDriver, **kwargs: Any
                  ) -> flow.LiveMigration:
        """A :class:`~migplane.core.flow.LiveMigration` on this world's clock."""
        kwargs.setdefault("clock", self.world.clock.now)
        kwargs.setdefault("sleep", self.world.clock.sleep)
        settings = kwargs.pop("settings", None) or source.settings.migration
        return flow.LiveMigration(instance, source, destination, settings, **kwargs)
