"""Fixed one-way delay through an NFQUEUE, for kernels without netem.

Run inside a host's network namespace as
    python3 nfdelay.py QUEUE DELAY_MS
it binds netfilter queue QUEUE (raw nfnetlink, no library needed), holds
each queued packet DELAY_MS milliseconds and accepts it, in order.  The lab
adds an iptables/ip6tables NFQUEUE rule with --queue-bypass, so traffic
flows undelayed (never dropped) if this process dies.  Packets are queued
whole (GSO) and only their metadata is copied, so the cost is per GSO
segment, not per byte.  Standalone on purpose: no imports from migplane.
"""

import collections
import os
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 2, 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQA_CFG_MASK, NFQA_CFG_FLAGS = 4, 5
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_GSO = 1, 4
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NF_ACCEPT = 1


def _attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def _msg(msg_type, queue, attrs, flags=NLM_F_REQUEST, seq=0):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def _check_ack(sock, seq):
    data = sock.recv(65536)
    off = 0
    while off < len(data):
        length, kind, _, rseq, _ = struct.unpack_from("=IHHII", data, off)
        if kind == NLMSG_ERROR and rseq == seq:
            err = struct.unpack_from("=i", data, off + 16)[0]
            if err:
                raise OSError(-err, os.strerror(-err))
            return
        off += (length + 3) & ~3
    raise OSError("no netlink ack")


def bind(queue, maxlen=20000):
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)      # SO_RCVBUFFORCE
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    steps = [
        [_attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET))],
        [_attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
         _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen))],
        [_attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO)),
         _attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO))],
    ]
    for seq, attrs in enumerate(steps, 1):
        sock.send(_msg(NFQNL_MSG_CONFIG, queue, attrs, NLM_F_REQUEST | NLM_F_ACK, seq))
        _check_ack(sock, seq)
    sock.setblocking(False)
    return sock


def packet_ids(data):
    """Packet ids in a buffer of NFQNL_MSG_PACKET messages."""
    off = 0
    while off + 16 <= len(data):
        length, kind, _, _, _ = struct.unpack_from("=IHHII", data, off)
        if length < 16:
            break
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a = off + 20
            while a + 4 <= off + length:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x7FFF == NFQA_PACKET_HDR:
                    yield struct.unpack_from("!I", data, a + 4)[0]
                a += (alen + 3) & ~3
        off += (length + 3) & ~3


def accept_upto(sock, queue, packet_id):
    """One batch verdict accepts every queued packet with id <= packet_id."""
    verdict = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))
    sock.send(_msg(NFQNL_MSG_VERDICT_BATCH, queue, [verdict]))


def serve(queue, delay_s):
    sock = bind(queue)
    print(f"ready queue={queue} delay_ms={delay_s * 1000:g}", flush=True)
    pending = collections.deque()       # (release time, packet id), FIFO
    while True:
        timeout = max(0.0, pending[0][0] - time.monotonic()) if pending else None
        ready, _, _ = select.select([sock], [], [], timeout)
        if ready:
            now = time.monotonic()
            while True:
                try:
                    data = sock.recv(1 << 20)
                except BlockingIOError:
                    break
                except OSError:         # ENOBUFS: lost notifications; the
                    continue            # next batch verdict releases them
                for pid in packet_ids(data):
                    pending.append((now + delay_s, pid))
        now = time.monotonic()
        last = None
        while pending and pending[0][0] <= now:
            last = pending.popleft()[1]
        if last is not None:
            accept_upto(sock, queue, last)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    serve(int(argv[0]), float(argv[1]) / 1000.0)


if __name__ == "__main__":
    main()
