"""Typed errors of migplane.

Every error carries a message that names the values involved, so that an
operator reading a log line knows which option, address or peer field to fix.
Modelled on os-vif's ``ExceptionBase``: subclasses set ``msg_fmt`` and are
raised with the keyword arguments it names. Values are quoted in
messages as bounded excerpts (:func:`excerpt`): a peer that sends a 10 MB
address gets an error quoting its first characters, not 10 MB back.
"""

import reprlib
from typing import Any
from typing import Optional

#: Characters of a value quoted in a message: a bad value from a peer may be
#: megabytes long, and the message only needs enough of it to be recognised.
QUOTE_LIMIT = 256
#: Characters of text (reasons, lists) put into a message as it is.
TEXT_LIMIT = 1024

_REPR = reprlib.Repr()
_REPR.maxstring = QUOTE_LIMIT
_REPR.maxother = QUOTE_LIMIT
_REPR.maxlevel = 4
_REPR.maxdict = _REPR.maxlist = _REPR.maxtuple = _REPR.maxset = 8


def excerpt(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """A short, bounded repr of ``value`` for an error message.

    Strings longer than ``limit`` are cut and their length given; containers
    are cut in depth and width (``reprlib``), so the cost and the size of the
    message do not grow with the value.
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return "%s... (%d characters)" % (repr(value[:limit])[:-1], len(value))
    try:
        text = _REPR.repr(value)
    except RecursionError:  # a structure nested beyond what repr can walk
        text = "<%s nested too deep>" % type(value).__name__
    return text if len(text) <= 2 * limit else text[:2 * limit] + "..."


class _Quoted:
    """A message argument: its ``%r`` is an :func:`excerpt`, its ``%s`` bounded."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return excerpt(self.value)

    def __str__(self) -> str:
        text = str(self.value)
        if len(text) <= TEXT_LIMIT:
            return text
        return "%s... (%d characters)" % (text[:TEXT_LIMIT], len(text))


def _quoted(value: object) -> object:
    # numbers keep working with %d; everything else is bounded
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return _Quoted(value)



class MigplaneError(Exception):
    """Base class of every error migplane raises on purpose."""

    msg_fmt = "An unknown migplane error occurred."
    #: The flow's ``MigrationResult`` when a migration ended with this error.
    result: Any = None

    def __init__(self, message: Optional[str] = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        if message is None:
            message = self.msg_fmt % {k: _quoted(v) for k, v in kwargs.items()}
        self.message = message
        super().__init__(message)


# -- configuration and input -------------------------------------------------


class ConfigError(MigplaneError):
    msg_fmt = "Invalid value %(value)r for option [%(group)s] %(option)s: %(reason)s"


class ConflictingOptions(MigplaneError):
    msg_fmt = "Options %(options)s cannot be combined: %(reason)s"


class InvalidAddress(MigplaneError):
    msg_fmt = "Invalid address %(value)r for %(field)s: %(reason)s"


# -- the pre-migration data contract -------------------------------------------


class InvalidWireData(MigplaneError):
    """Data that crosses between hosts (a versioned object) is malformed."""

    msg_fmt = "Invalid %(name)s data: field %(field)r has value %(value)r: %(reason)s"


class InvalidMigrateData(InvalidWireData):
    msg_fmt = "Invalid pre-migration data: field %(field)r has value %(value)r: %(reason)s"


class IncompatibleVersion(MigplaneError):
    msg_fmt = (
        "%(name)s version %(version)s from the peer is not supported; "
        "this side understands major version %(supported)s"
    )


# -- drivers and their loading ----------------------------------------------


class DriverNotFound(MigplaneError):
    msg_fmt = (
        "No migration driver named %(name)r is installed in namespace %(namespace)s; "
        "installed drivers: %(installed)s"
    )


class DriverLoadError(MigplaneError):
    msg_fmt = "Migration driver %(name)r failed to load: %(reason)s"


class UnsupportedFeature(MigplaneError):
    msg_fmt = "Driver %(driver)s does not support %(feature)s"


class DriverContractError(MigplaneError):
    """A driver answered outside its contract (a wrong type, an unknown state)."""

    msg_fmt = "Driver %(driver)s broke its contract in %(step)s: %(reason)s"
    #: The JobProgress that broke it, when it is one (the flow may cancel its job).
    progress: Any = None


class StepTimedOut(MigplaneError):
    """A driver step gave no answer in time: what it did on its host is unknown."""

    msg_fmt = ("Driver step %(step)s on host %(host)s gave no answer %(reason)s; what it "
               "did there is unknown and a late answer is ignored")

    @property
    def step(self) -> Optional[str]:
        step: Optional[str] = self.kwargs.get("step")
        return step

    @property
    def host(self) -> Optional[str]:
        host: Optional[str] = self.kwargs.get("host")
        return host


class InvalidMigrationPlan(MigplaneError):
    """The base of the three refusals below (deprecated as a name of its own:
    raise one of them; catching it still catches all three)."""

    msg_fmt = "Cannot migrate %(instance)s: %(reason)s"


class PlanRefused(InvalidMigrationPlan):
    """The source's trust check refused the migration's addresses (``core.trust``)."""


class InconsistentURIs(InvalidMigrationPlan):
    """The migration's URIs lack the destination or contradict each other."""


class EvacuationRefused(InvalidMigrationPlan):
    """An evacuation cannot be planned, started or aborted as asked."""


# -- running a migration ---------------------------------------------------


class MigrationError(MigplaneError):
    """A step of a live migration failed; the guest was left on one host."""

    msg_fmt = "Live migration of %(instance)s failed during %(step)s: %(reason)s"


class DestinationCheckFailed(MigrationError):
    msg_fmt = "Destination %(host)s cannot accept %(instance)s: %(reason)s"


class SourceCheckFailed(MigrationError):
    msg_fmt = "Source %(host)s cannot migrate %(instance)s: %(reason)s"


class InboundAddressError(MigrationError):
    msg_fmt = "Inbound migration address %(address)s of %(host)s is unusable: %(reason)s"


class MigrationAborted(MigrationError):
    msg_fmt = "Live migration of %(instance)s was aborted: %(reason)s"


class MigrationTimeout(MigrationError):
    msg_fmt = (
        "Live migration of %(instance)s did not complete within %(timeout)s s "
        "(completion timeout %(per_gib)s s/GiB for %(data_gib)s GiB); action: %(action)s"
    )


class PostCopyPaused(MigrationError):
    """A post-copy migration whose stream broke and could not be recovered in time."""

    msg_fmt = ("Live migration %(migration_id)s of %(instance)s is paused in post-copy: "
               "%(reason)s. Both halves are kept as they are (neither is destroyed, "
               "undefined or resumed): the guest's memory is split between the two "
               "hosts. Once both hosts and the migration link answer, resume it with "
               "'migplane resume %(migration_id)s'")


class MigrationInProgress(MigrationError):
    msg_fmt = ("Live migration of %(instance)s from %(host)s is refused: migration "
               "%(other)s of it is already running in this process")


class MigrationNotSettled(MigrationError):
    """The migration ended without the guest running on exactly one clean host.

    ``verdict`` is one of :data:`migplane.core.events.VERDICTS` (unresolved,
    postcopy-paused, lost, split); ``.result`` carries the rest.
    """

    msg_fmt = "Live migration of %(instance)s ended %(verdict)s: %(reason)s"


class GuestSplit(MigrationError):
    """Both hosts ran the guest once; it is not migrated again until an operator
    settled it (and released it with ``migplane settle``)."""

    msg_fmt = ("Live migration of %(instance)s is refused: it was found running on two "
               "hosts (migration %(migration)s, %(reason)s); an operator must settle it "
               "first")


class InstanceNotFound(MigplaneError):
    msg_fmt = "Instance %(instance)s is not on host %(host)s"


class NoActiveMigration(MigplaneError):
    msg_fmt = "No live migration of %(instance)s is running on %(host)s"


class TooManyMigrations(MigplaneError):
    msg_fmt = (
        "Host %(host)s already runs %(running)d live migration(s), the limit set by "
        "max_concurrent_live_migrations=%(limit)d"
    )


class HypervisorUnavailable(MigplaneError):
    msg_fmt = "Cannot reach the hypervisor on %(host)s: %(reason)s"
