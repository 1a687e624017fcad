"""The one question on the migration plane (migplane.agent.whereplane).

Where a guest runs, and whether it is paused, for a peer whose management
plane is down: served on an explicit address, to peers' certificates only,
with a certificate that names the address dialled; nothing else is served.
"""

import logging
import socket

import pytest
import requests

from migplane.agent import client as client_mod
from migplane.agent import errors
from migplane.agent import testing
from migplane.agent import whereplane
from migplane.core import exception


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def where_pair(world, start_agent):
    world.add_guest("host-b", "vm1", memory_mib=64)
    world.hosts["host-b"].guests["vm1"].state = "paused"
    world.hosts["host-b"].guests["vm1"].reason = "held"
    port = _free_port()
    a = start_agent("host-a", agent_options={"migration_plane_port": port})
    b = start_agent("host-b", agent_options={"migration_plane_port": port})
    # the unit tests' certificates name 127.0.0.1: it stands for host-b's migration address
    server = whereplane.server(b.agent, address="127.0.0.1").prepare()
    server.start()
    yield a, b, server
    server.stop()


def test_a_peer_asks_over_the_migration_plane_when_management_is_down(where_pair):
    a, b, server = where_pair
    remote = a.agent.peer({"host": "host-b"})
    remote.where = whereplane.client(a.agent, "host-b", "127.0.0.1")
    assert remote.where.url == server.url
    # the management plane goes down: the agent's URL no longer answers
    remote.client = client_mod.AgentClient("https://127.0.0.1:%d" % _free_port(), None,
                                           ca_file=a.agent.options.ca_file,
                                           ssl_context=a.agent.client_context,
                                           peer_name="host-b")
    info = remote.get_instance_info("vm1")
    assert (info.state, info.reason) == ("paused", "held")
    with pytest.raises(exception.InstanceNotFound):
        remote.get_instance_info("nothere")


def test_nothing_else_is_served_there(where_pair):
    a, _, server = where_pair
    where = whereplane.client(a.agent, "host-b", "127.0.0.1")
    for path in ("/v1/host", "/v1/migrations", "/v1/instances/vm1/x", "/v1/steps"):
        with pytest.raises(errors.AgentError) as info:
            where.get(path)
        assert info.value.status == 404, path
    with pytest.raises(errors.AgentError) as info:
        where.post("/v1/slots", {"migration_id": "m1", "source": "host-a",
                                 "instance": "vm1"})
    assert info.value.status == 404


def test_operators_and_strangers_cannot_ask(where_pair, pki):
    _, _, server = where_pair
    with pytest.raises(requests.exceptions.SSLError):  # no client certificate: no TLS
        requests.get(server.url + "/v1/instances/vm1", verify=pki.ca_file,
                     headers={"Authorization": "Bearer %s" % testing.TOKEN}, timeout=10)
    # a certificate from the CA, but not one of the peers'
    cert, key = pki.issue("host-z")
    answer = requests.get(server.url + "/v1/instances/vm1", verify=pki.ca_file,
                          cert=(cert, key), timeout=10)
    assert answer.status_code == 403 and "peer agents only" in answer.text


def test_a_wildcard_is_refused(world, start_agent):
    start_agent("host-a")
    b = start_agent("host-b", agent_options={"migration_plane_port": _free_port()})
    with pytest.raises(exception.ConfigError, match="never served on a wildcard") as info:
        whereplane.server(b.agent, address="0.0.0.0")
    assert "migration_plane_port" in str(info.value)


def test_a_certificate_without_the_address_serves_nothing_and_says_so(
        world, start_agent, caplog):
    # my_live_migration_ip may be the wrong value: the agent still runs, so
    # that `migplane check` can say so, and it never answers for that address
    start_agent("host-a")
    b = start_agent("host-b", agent_options={"migration_plane_port": _free_port()})
    with caplog.at_level(logging.ERROR, logger="migplane.agent.whereplane"):
        assert whereplane.server(b.agent, address="198.51.100.12") is None
    assert "does not name 198.51.100.12" in caplog.text
    assert "cannot ask this host" in caplog.text


def test_unset_port_serves_and_asks_nothing(world, start_agent):
    b = start_agent("host-b")
    assert whereplane.server(b.agent, address="127.0.0.1") is None
    assert whereplane.client(b.agent, "host-a", "127.0.0.1") is None
