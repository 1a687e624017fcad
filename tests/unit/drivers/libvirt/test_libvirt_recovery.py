"""What the recovery of a broken post-copy probes before each resume."""

import errno

from migplane.drivers.libvirt import recovery


class Sock:
    def close(self):
        pass


def probe(answers):
    """A connect() answering per (host, port) from ``answers`` (an exception or OK)."""
    asked = []

    def connect(address, timeout=None):
        asked.append(address)
        outcome = answers.get(address, "ok")
        if isinstance(outcome, BaseException):
            raise outcome
        return Sock()
    return connect, asked


def test_the_daemon_must_accept_and_the_migration_address_must_answer():
    connect, asked = probe({("198.51.100.12", 49152): ConnectionRefusedError()})
    rec = recovery.Recovery(30, 600, "qemu+tcp://192.0.2.12/system",
                            "tcp://198.51.100.12:49152", connect=connect)
    assert rec.peer_answers()[0]   # a refusal on the migration address: the host is back
    assert asked == [("192.0.2.12", 16509), ("198.51.100.12", 49152)]


def test_a_daemon_that_refuses_or_a_silent_migration_address_wait():
    connect, _ = probe({("192.0.2.12", 16514): ConnectionRefusedError()})
    rec = recovery.Recovery(30, 600, "qemu+tls://192.0.2.12/system", None, connect=connect)
    up, why = rec.peer_answers()
    assert not up and "libvirtd" in why and "16514" in why
    silent = OSError(errno.EHOSTUNREACH, "No route to host")
    connect, _ = probe({("198.51.100.12", 49152): silent})
    rec = recovery.Recovery(30, 600, "qemu+tcp://192.0.2.12/system",
                            "tcp://198.51.100.12:49152", connect=connect)
    up, why = rec.peer_answers()
    assert not up and "migration address" in why and "No route" in why


def test_a_name_this_process_cannot_resolve_is_left_to_the_resume_itself():
    import socket

    connect, _ = probe({("host-b", 16509): socket.gaierror(-2, "Name or service not known")})
    rec = recovery.Recovery(30, 600, "qemu+tcp://host-b/system", None, connect=connect)
    assert rec.peer_answers()[0]
