"""Loading a migration driver by name through stevedore.

One name selects one implementation (stevedore's driver pattern). Two
failure modes are kept apart, unlike a bare ``ExtensionManager``: a name
nobody installed gives an error listing what is installed, while a driver
that is installed but fails to import raises that failure itself.
"""

from importlib import metadata

from stevedore import driver as stevedore_driver
from stevedore import exception as stevedore_exc

from migplane.core import exception
from migplane.core import settings as settings_mod

NAMESPACE = "migplane.drivers"


def installed_drivers():
    """Names of the drivers installed in :data:`NAMESPACE`, without importing them."""
    return sorted({ep.name for ep in metadata.entry_points(group=NAMESPACE)})


def _reraise(manager, entrypoint, err):
    if isinstance(err, exception.MigplaneError):
        raise err  # e.g. the driver rejected its configuration: already clear
    raise exception.DriverLoadError(name=entrypoint.name, reason="%s: %s" % (
        type(err).__name__, err)) from err


def load_driver(conf, name=None):
    """Instantiate driver ``name`` (default: ``[live_migration] driver``) with ``conf``."""
    if name is None:
        name = settings_mod.load(conf).driver
    try:
        manager = stevedore_driver.DriverManager(
            namespace=NAMESPACE, name=name, invoke_on_load=True,
            invoke_args=(conf,), on_load_failure_callback=_reraise)
    except stevedore_exc.NoMatches:
        raise exception.DriverNotFound(name=name, namespace=NAMESPACE,
                                       installed=", ".join(installed_drivers()) or "none")
    return manager.driver
