"""Whether the source may carry out the plan its destination answered.

The destination names where the bulk stream goes (its inbound address, the
listen address): a source that followed that answer blindly would send guest
memory wherever a compromised or impersonated destination says. Pure: the
resolved :class:`~migplane.core.uri.MigrationURIs`, the networks the source
allows and its management networks, and the identity it authenticated the
destination as, in; a frozen :class:`Verdict` naming the value and the rule
out. Nothing here resolves names: a name could point anywhere, so the
migration plane is only accepted as an address.

Rules, in order:

* ``identity``: the destination's host name is the identity the source
  authenticated (when it authenticated one).
* ``address``: the inbound address is an IP address, not a name, and not an
  unspecified, loopback, multicast or reserved one.
* ``management``: it is on none of the source's management networks.
* ``networks``: it lies inside one of the allowed migration networks (None
  restricts nothing, an empty list allows nothing: the agent always passes a
  list), and is not the network address (IPv6: subnet-router anycast) or
  the IPv4 broadcast address of the one it is in (no one host, or all).
* ``self``: it is none of the source's own addresses (a destination that
  answers the source's address would have it send the guest to itself).
* ``listen``: the destination's listen address is the inbound address or
  passes the same three rules.
* Without an inbound address (the legacy plan) nothing came from the
  destination that addresses the bulk stream, but a listen address must not
  appear either.
"""

import dataclasses
import ipaddress
from typing import Any
from typing import Iterable
from typing import List
from typing import Mapping
from typing import Optional
from typing import Sequence
from typing import Set
from typing import Tuple
from typing import Union

from migplane.core import address
from migplane.core import exception
from migplane.core import settings as settings_mod
from migplane.core import uri as uri_mod

IDENTITY = "identity"
ADDRESS = "address"
MANAGEMENT = "management"
NETWORKS = "networks"
LISTEN = "listen"
SELF = "self"

#: What ``ipaddress.ip_address`` and ``ipaddress.ip_network`` return.
_Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """``allowed``, or the refused ``value``, the ``rule`` it broke and why."""

    allowed: bool
    rule: Optional[str] = None
    value: Optional[str] = None
    reason: str = ""
    checked: Tuple[str, ...] = ()


def _ip(value: str) -> Optional[_Address]:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _bare(ip: _Address) -> _Address:
    """The address without an IPv6 zone id, an IPv4-mapped one as IPv4: what it reaches."""
    bare = ipaddress.ip_address(str(ip).split("%", 1)[0])
    return getattr(bare, "ipv4_mapped", None) or bare


def _inside(ip: _Address, nets: Iterable[_Network]) -> Optional[_Network]:
    bare = _bare(ip)
    return next((n for n in nets if n.version == bare.version and bare in n), None)


def _not_a_host(ip: _Address, nets: Iterable[_Network]) -> Optional[_Network]:
    """The network of ``nets`` whose network address ``ip`` is (IPv6: the
    subnet-router anycast address), or whose broadcast address (IPv4), or None."""
    bare = _bare(ip)
    for net in nets:
        if net.version != bare.version or bare not in net or net.num_addresses <= 2:
            continue
        if bare == net.network_address or (net.version == 4
                                           and bare == net.broadcast_address):
            return net
    return None


def _check_address(field: str, value: str, allowed: Optional[Sequence[_Network]],
                   management: Optional[Sequence[_Network]], own: Iterable[_Address] = ()
                   ) -> Optional[Verdict]:
    """None when ``value`` may receive guest memory, else a refusing Verdict."""
    try:
        host = address.parse_host(value, field=field, allow_port=False).host
    except exception.InvalidAddress as err:
        return Verdict(False, ADDRESS, value, "%s %r is not an address: %s"
                       % (field, value, err.kwargs.get("reason", err)))
    ip = _ip(host)
    if ip is None:
        return Verdict(False, ADDRESS, value,
                       "%s %r is a name; the migration plane is accepted only as an IP "
                       "address the source can check against migration_networks"
                       % (field, value))
    bare = _bare(ip)
    if bare.is_unspecified or bare.is_loopback or bare.is_multicast or bare.is_reserved:
        return Verdict(False, ADDRESS, value, "%s %r is an unspecified, loopback, "
                       "multicast or reserved address" % (field, value))
    if any(_bare(ip) == mine for mine in own):
        return Verdict(False, SELF, value, "%s %r is one of the source's own addresses"
                       % (field, value))
    net = _inside(ip, management or ())
    if net is not None:
        return Verdict(False, MANAGEMENT, value, "%s %r is on the management network %s; "
                       "the bulk stream never rides it" % (field, value, net))
    if allowed is not None and _inside(ip, allowed) is None:
        return Verdict(False, NETWORKS, value, "%s %r is outside the allowed migration "
                       "networks (%s)" % (field, value, ", ".join(str(n) for n in allowed)
                                          or "none: set [live_migration] "
                                             "migration_networks"))
    net = _not_a_host(ip, allowed or ())
    if net is not None:
        return Verdict(False, NETWORKS, value, "%s %r is the network or broadcast "
                       "address of %s, not one host's" % (field, value, net))
    return None


# ``Any``: the values of the agent's host facts (JSON).
def plan_networks(interfaces: Sequence[Mapping[str, Any]], routed: Iterable[str],
                  bind_host: Optional[str], configured: Optional[Iterable[str]],
                  inbound_address: Optional[str], inbound_cidr: Optional[str] = None
                  ) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """``(allowed, management)`` CIDRs a migration's addresses are checked against.

    Management: the networks of the interfaces that hold ``bind_host`` (where
    the agent listens) or that the routes to the peer's agent and host name
    take (``routed``, interface names). Allowed: ``configured``
    (``[live_migration] migration_networks``) when set; else the networks of
    the interfaces holding this host's own ``inbound_address``, or, without
    one, of every interface that is not a management one, but only when the
    management one is known (otherwise nothing: fail closed); plus
    ``inbound_cidr``; never a management network.

    :param interfaces: ``[{"ifname", "addresses": [{"address", "prefixlen",
        "scope"}]}]`` as the agent's host facts give them.
    """
    management_devs = set(routed)
    for iface in interfaces:
        if any(a["address"] == bind_host for a in iface.get("addresses", ())):
            management_devs.add(iface["ifname"])
    management: Set[str] = set()
    for iface in interfaces:
        if iface["ifname"] in management_devs:
            management |= _networks(iface)
    if configured is not None:
        return tuple(configured), tuple(sorted(management))
    allowed: Set[str] = set()
    for iface in interfaces:
        if iface["ifname"] in management_devs:
            continue
        held = {a["address"] for a in iface.get("addresses", ())}
        if (inbound_address in held) if inbound_address is not None else bool(
                management_devs):
            allowed |= _networks(iface)
    if inbound_cidr is not None:
        allowed.add(inbound_cidr)
    return tuple(sorted(allowed - management)), tuple(sorted(management))


def _networks(iface: Mapping[str, Any]) -> Set[str]:
    """The networks of an interface's addresses (host-scoped ones left out)."""
    return {str(ipaddress.ip_interface("%s/%s" % (a["address"].split("%")[0],
                                                  a["prefixlen"])).network)
            for a in iface.get("addresses", ()) if a.get("scope", "global") != "host"}


def check_plan(uris: uri_mod.MigrationURIs,
               migration_networks: Optional[Iterable[str]] = None,
               management_networks: Iterable[str] = (), destination: Optional[str] = None,
               authenticated: Optional[str] = None, source_addresses: Iterable[str] = ()
               ) -> Verdict:
    """The :class:`Verdict` on ``uris``, resolved from a destination's answer.

    :param migration_networks: CIDRs the inbound and listen addresses must lie in
        (None: not restricted by a list).
    :param management_networks: CIDRs they must never lie in.
    :param destination: the host name the destination answered with.
    :param authenticated: the identity the source authenticated it as, or None.
    :param source_addresses: the source's own addresses, never a destination.
    """
    own: Tuple[_Address, ...] = tuple(filter(None, (_ip(str(a).split("%", 1)[0])
                                                    for a in source_addresses)))
    own = tuple(_bare(a) for a in own)
    allowed = address.parse_networks(migration_networks)
    management = address.parse_networks(management_networks, option="management_networks")
    checked: List[str] = []
    if authenticated is not None:
        checked.append(IDENTITY)
        if destination != authenticated:
            return Verdict(False, IDENTITY, destination,
                           "the destination calls itself %r but the source authenticated "
                           "%r" % (destination, authenticated), tuple(checked))
    if uris.plane != uri_mod.MIGRATION:
        if uris.listen_address is not None:
            return Verdict(False, LISTEN, uris.listen_address,
                           "listen_address %r without an inbound address"
                           % uris.listen_address, tuple(checked))
        return Verdict(True, checked=tuple(checked))
    checked += [ADDRESS, SELF, MANAGEMENT, NETWORKS]
    refused = _check_address("inbound address", uris.bulk_host, allowed, management, own)
    if refused is not None:
        return dataclasses.replace(refused, checked=tuple(checked))
    listen = uris.listen_address
    if listen is not None:
        checked.append(LISTEN)
        same = _ip(listen) is not None and _ip(listen) == _ip(
            address.parse_host(uris.bulk_host, allow_port=False).host)
        if not same:
            if allowed is None:
                return Verdict(False, LISTEN, listen, "listen_address %r is not the "
                               "inbound address %r" % (listen, uris.bulk_host),
                               tuple(checked))
            refused = _check_address("listen_address", listen, allowed, management, own)
            if refused is not None:
                return dataclasses.replace(refused, rule=LISTEN
                                           if refused.rule == ADDRESS else refused.rule,
                                           checked=tuple(checked))
    return Verdict(True, checked=tuple(checked))


def enforce(instance: str, uris: uri_mod.MigrationURIs,
            settings: settings_mod.MigrationSettings, destination: Optional[str] = None,
            authenticated: Optional[str] = None) -> Verdict:
    """Raise PlanRefused naming the value and the rule unless the plan is allowed."""
    verdict = check_plan(uris, getattr(settings, "migration_networks", None),
                         getattr(settings, "management_networks", ()),
                         destination=destination, authenticated=authenticated,
                         source_addresses=getattr(settings, "source_addresses", ()))
    if not verdict.allowed:
        raise exception.PlanRefused(
            instance=instance, reason="refused by the source's plan check (rule %r): %s"
                                      % (verdict.rule, verdict.reason))
    return verdict
