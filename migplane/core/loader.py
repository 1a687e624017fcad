"""Loading a migration driver by name through stevedore.

One name selects one implementation (stevedore's driver pattern). Failure
modes are kept apart, unlike a bare ``ExtensionManager``: a name nobody
installed gives an error listing what is installed; a driver that is
installed but fails to import raises that failure itself; an entry point
that is not a :class:`~migplane.core.driver.MigrationDriver`, or whose
``describe()`` does not answer a :class:`~migplane.core.driver.DriverInfo`,
is refused here, naming the driver, instead of failing later with an
``AttributeError`` after a destination was already prepared.
"""

from importlib import metadata
from typing import Any
from typing import List
from typing import Optional

from oslo_config import cfg
from stevedore import driver as stevedore_driver
from stevedore import exception as stevedore_exc

from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import settings as settings_mod

NAMESPACE = "migplane.drivers"


def installed_drivers() -> List[str]:
    """Names of the drivers installed in :data:`NAMESPACE`, without importing them."""
    return sorted({ep.name for ep in metadata.entry_points(group=NAMESPACE)})


def _reraise(manager: Any, entrypoint: metadata.EntryPoint, err: BaseException) -> None:
    if isinstance(err, exception.MigplaneError):
        raise err  # e.g. the driver rejected its configuration: already clear
    raise exception.DriverLoadError(name=entrypoint.name, reason="%s: %s" % (
        type(err).__name__, err)) from err


def _check_class(name: str, plugin: Any) -> None:
    if not (isinstance(plugin, type) and issubclass(plugin, driver_mod.MigrationDriver)):
        raise exception.DriverLoadError(
            name=name, reason="its entry point gives %s, which is not a subclass of "
                              "migplane.core.driver.MigrationDriver"
                              % exception.excerpt(plugin))


def check_driver(name: str, drv: Any) -> driver_mod.DriverInfo:
    """Check a constructed driver answers ``describe()`` with a DriverInfo.

    Called at load time so that a broken ``describe()`` is noticed before any
    host is touched. Returns the :class:`DriverInfo`.
    """
    try:
        info = drv.describe()
    except exception.MigplaneError:
        raise
    except Exception as err:
        raise exception.DriverLoadError(
            name=name, reason="describe() raised %s: %s" % (
                type(err).__name__, exception.excerpt(str(err)))) from err
    if not isinstance(info, driver_mod.DriverInfo):
        raise exception.DriverLoadError(
            name=name, reason="describe() returned %s, not a DriverInfo"
                              % exception.excerpt(info))
    return info


def load_driver(conf: cfg.ConfigOpts, name: Optional[str] = None
                ) -> driver_mod.MigrationDriver:
    """Instantiate driver ``name`` (default: ``[live_migration] driver``) with ``conf``.

    :raises DriverNotFound: no driver of that name is installed.
    :raises DriverLoadError: the driver failed to import or to construct, is not
        a MigrationDriver, or its ``describe()`` is not a DriverInfo.
    :raises ConfigError: the configuration is invalid (from the driver or the core).
    """
    if name is None:
        name = settings_mod.load(conf).driver
    try:
        manager: stevedore_driver.DriverManager[Any] = stevedore_driver.DriverManager(
            namespace=NAMESPACE, name=name, invoke_on_load=False,
            on_load_failure_callback=_reraise)
    except stevedore_exc.NoMatches:
        raise exception.DriverNotFound(name=name, namespace=NAMESPACE,
                                       installed=", ".join(installed_drivers()) or "none")
    plugin = manager.driver
    _check_class(name, plugin)
    try:
        drv: driver_mod.MigrationDriver = plugin(conf)
    except exception.MigplaneError:
        raise
    except Exception as err:
        raise exception.DriverLoadError(name=name, reason="%s: %s" % (
            type(err).__name__, err)) from err
    check_driver(name, drv)
    return drv
