#!/usr/bin/env python3
"""A hostile gatehouse peer: speaks wire protocol v1 (docs/protocol.md) over
TLS 1.3 with any certificate it is given, to provoke each refusal of the
attack suite. Prints what came back as JSON lines (one per frame, plus a
summary), so the suite can assert the refusal and its reason.

usage: wire.py HOST PORT SERVER_NAME CERT KEY CA ATTACK [ARG...]
  hello ROLE NAME              HELLO, print the answer (HELLO_OK or DENY)
  open NAME ROLE AGENT HOPS    HELLO as gateway NAME, then OPEN(ROLE, AGENT, hops
                               comma-separated); print the answer
  flood NAME COUNT             HELLO as gateway NAME, then COUNT OPENs of made-up
                               agents; print how many OPEN_OK and OPEN_DENY by reason
  forge NAME AGENT SEQ [INC]   HELLO as gateway NAME, OPEN AGENT through NAME (in
                               incarnation INC: hex id[@base seq], e.g. the real
                               agent's), then DATA seq SEQ on it; print what came back
  jump NAME SEQ                HELLO as agent NAME, then DATA seq SEQ
  flood-data NAME PARENT_PID   HELLO as agent NAME, freeze the parent's process
                               (SIGSTOP: no credit can come back), send DATA in
                               order one frame past the window, print the answer,
                               thaw the parent
  hold NAME                    HELLO as agent NAME; wait until the parent ends the
                               session; print when (epoch ms) and how
  truncate NAME                HELLO as agent NAME, then half a DATA frame and
                               silence; print how long until the parent ends it
An agent announces a new random incarnation from seq 1 unless one is given.
usage: wire.py HOST PORT drip BYTES_PER_S   a ClientHello, one byte at a time;
                                            print how long until the server closes
"""
import json
import os
import signal
import socket
import ssl
import struct
import sys
import time

TYPES = {1: "HELLO", 2: "AUTH", 3: "HELLO_OK", 4: "DENY", 5: "OPEN", 6: "OPEN_OK", 7: "OPEN_DENY", 8: "CLOSE",
         9: "DATA", 10: "ACK", 11: "CREDIT", 12: "PING", 13: "PONG", 14: "GOAWAY"}
REASONS = ["normal", "protocol_error", "version_unsupported", "auth_failed", "not_approved", "name_mismatch",
           "overloaded", "shutting_down", "timeout", "loop_detected", "flow_control_violation", "channel_unknown",
           "channel_exists", "channel_limit", "parent_unavailable", "internal_error"]
ROLES = {"agent": 1, "gateway": 2}


def str8(text):
    data = text.encode()
    return bytes([len(data)]) + data


def frame(frame_type, channel, body):
    return struct.pack(">BBHII", 1, frame_type, 0, channel, len(body)) + body


def incarnation(role, given=None):
    """HELLO's and OPEN's last fields: an agent's incarnation id and base seq; a gateway's are 0."""
    if role != "agent":
        return struct.pack(">QQ", 0, 0)
    if not given:
        return struct.pack(">QQ", int.from_bytes(os.urandom(8), "big") | 1, 0)
    agent_id, _, base_seq = given.partition("@")
    return struct.pack(">QQ", int(agent_id, 16), int(base_seq or "0"))


def hello(role, name):
    return frame(1, 0, bytes([1, 1, ROLES[role], 1]) + str8(name) + incarnation(role))


def open_frame(channel, role, agent, hops, given_incarnation=None):
    body = bytes([ROLES[role], 1]) + str8(agent) + bytes([len(hops)]) + b"".join(str8(h) for h in hops)
    return frame(5, channel, body + incarnation(role, given_incarnation))


def data(channel, seq, payload=b"x"):
    return frame(9, channel, struct.pack(">QH", seq, 1) + payload)


class Peer:
    def __init__(self, host, port, server_name, cert, key, ca):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_verify_locations(ca)
        context.load_cert_chain(cert, key)
        raw = socket.create_connection((host, int(port)), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname=server_name)
        self.buffer = b""

    def send(self, data_bytes):
        self.sock.sendall(data_bytes)

    def next(self, timeout_s=10.0):
        """The next frame as a dict, or None when the peer closed (or the time ran out)."""
        self.sock.settimeout(timeout_s)
        while True:
            if len(self.buffer) >= 12:
                _, frame_type, _, channel, size = struct.unpack(">BBHII", self.buffer[:12])
                if len(self.buffer) >= 12 + size:
                    body = self.buffer[12:12 + size]
                    self.buffer = self.buffer[12 + size:]
                    return decode(frame_type, channel, body)
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLError, ConnectionError, OSError):
                return None
            if not chunk:
                return None
            self.buffer += chunk


def decode(frame_type, channel, body):
    out = {"type": TYPES.get(frame_type, str(frame_type)), "channel": channel}
    if frame_type in (4, 7):  # DENY, OPEN_DENY
        reason, event = struct.unpack(">HI", body[:6])
        out.update(reason=REASONS[reason], event=event, text=body[7:7 + body[6]].decode(errors="replace"))
    elif frame_type in (8, 14):  # CLOSE, GOAWAY
        out["reason"] = REASONS[struct.unpack(">H", body[:2])[0]]
    elif frame_type == 3:  # HELLO_OK
        out.update(credit=struct.unpack(">I", body[3:7])[0], last_durable_seq=struct.unpack(">Q", body[7:15])[0])
    elif frame_type == 6:  # OPEN_OK
        seq, credit = struct.unpack(">QI", body[:12])
        out.update(last_durable_seq=seq, credit=credit)
    elif frame_type == 10:
        out["durable_seq"] = struct.unpack(">Q", body[:8])[0]
    return out


def emit(record):
    print(json.dumps(record), flush=True)


def welcomed(peer, role, name):
    peer.send(hello(role, name))
    answer = peer.next()
    emit(answer or {"type": "closed"})
    return answer if answer and answer["type"] == "HELLO_OK" else None


def answer_on(peer, channel):
    """The next frame for `channel` (others, ACK and CREDIT, are skipped)."""
    while True:
        answer = peer.next()
        if answer is None:
            return {"type": "closed"}
        if answer["type"] in ("ACK", "CREDIT", "PONG"):
            continue  # the flow of what was taken, not the answer
        if answer["channel"] == channel or answer["type"] in ("DENY", "GOAWAY"):
            return answer


def drip(host, port, bytes_per_s):
    # A real ClientHello would finish; its first bytes, slowly, never do.
    hello_bytes = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03]) + bytes(500)
    sock = socket.create_connection((host, int(port)), timeout=5)
    start = time.monotonic()
    for byte in hello_bytes:
        try:
            sock.sendall(bytes([byte]))
            sock.settimeout(1.0 / bytes_per_s)
            if sock.recv(1) == b"":
                break
        except socket.timeout:
            continue
        except OSError:
            break
    emit({"type": "closed", "after_ms": int((time.monotonic() - start) * 1000)})


def main(argv):
    if len(argv) >= 4 and argv[3] == "drip":
        drip(argv[1], argv[2], float(argv[4]))
        return
    host, port, server_name, cert, key, ca, attack, *args = argv[1:]
    peer = Peer(host, port, server_name, cert, key, ca)
    if attack == "hello":
        welcomed(peer, args[0], args[1])
    elif attack == "open":
        if welcomed(peer, "gateway", args[0]):
            hops = [h for h in args[3].split(",") if h]
            peer.send(open_frame(1, args[1], args[2], hops))
            emit(answer_on(peer, 1))
    elif attack == "flood":
        if welcomed(peer, "gateway", args[0]):
            count = int(args[1])
            peer.send(b"".join(open_frame(c, "agent", f"made-up-{c}.flood.test", [args[0]]) for c in range(1, count + 1)))
            tally = {}
            for _ in range(count):
                answer = peer.next()
                if answer is None:
                    break
                key_name = answer["type"] + ("/" + answer["reason"] if "reason" in answer else "")
                tally[key_name] = tally.get(key_name, 0) + 1
            emit({"type": "tally", **tally})
    elif attack == "forge":
        if welcomed(peer, "gateway", args[0]):
            peer.send(open_frame(1, "agent", args[1], [args[0]], args[3] if len(args) > 3 else None))
            answer = answer_on(peer, 1)
            emit(answer)
            if answer["type"] == "OPEN_OK":
                peer.send(data(1, int(args[2])))
                emit(answer_on(peer, 1))
    elif attack == "jump":
        if welcomed(peer, "agent", args[0]):
            peer.send(data(0, int(args[1])))
            emit(answer_on(peer, 0))
    elif attack == "heartbeats":  # an agent has no channels to report: HEARTBEATS is a gateway's frame
        if welcomed(peer, "agent", args[0]):
            peer.send(frame(0x0F, 0, struct.pack(">I", 1)))
            emit(answer_on(peer, 0))
    elif attack == "flood-data":
        welcome = welcomed(peer, "agent", args[0])
        if welcome:
            # A parent that answered could grant more credit before the last
            # frame is read, and the frame would be within it: frozen, the
            # window is all there is, and the last frame passes it.
            payload = b"x" * 4000
            frames = welcome["credit"] // (22 + len(payload)) + 1
            seq = welcome["last_durable_seq"]
            parent_pid = int(args[1])
            os.kill(parent_pid, signal.SIGSTOP)
            try:
                peer.send(b"".join(data(0, seq + i, payload) for i in range(1, frames + 1)))
                emit(answer_on(peer, 0))
            finally:
                os.kill(parent_pid, signal.SIGCONT)
    elif attack == "truncate":
        if welcomed(peer, "agent", args[0]):
            peer.send(data(0, 1)[:7])
            start = time.monotonic()
            answer = peer.next(timeout_s=120)
            emit({**(answer or {"type": "closed"}), "after_ms": int((time.monotonic() - start) * 1000)})
    elif attack == "hold":
        if welcomed(peer, "agent", args[0]):
            while True:
                answer = peer.next(timeout_s=120)
                if answer is None or answer["type"] in ("DENY", "GOAWAY", "CLOSE"):
                    emit({"type": "ended", "at_ms": int(time.time() * 1000), "how": answer})
                    return
    else:
        sys.exit(f"unknown attack {attack}")


if __name__ == "__main__":
    main(sys.argv)
