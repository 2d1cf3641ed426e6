"""A loopback TCP proxy between the collector and Dovecot that misbehaves on cue.

    >>> with FaultProxy(server.imap_port, {2: Fault("cut_in_fetch", seed=7)}) as proxy:
    ...     collect through 127.0.0.1:proxy.port   # connection 2 dies inside a FETCH response

Faults act on one connection (counted from 1 in accept order) or, with ``every=True``, on
all of them. The collector talks plain IMAP through the proxy so that the proxy can see
where a FETCH response starts and which tag a GETQUOTAROOT carries.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["pass", "refuse", "cut", "cut_in_fetch", "stall", "no_quota"]


@dataclass(frozen=True)
class Fault:
    """What to do to one connection.

    refuse        accept, then reset at once (the server's port is gone)
    cut           reset after ``after`` bytes from the server
    cut_in_fetch  reset at a seeded random point inside the first FETCH response, within
                  its first ``after`` bytes (3,000 when 0; a shorter response is not cut)
    stall         stop forwarding after ``after`` bytes; the socket stays open
    no_quota      the server answers GETQUOTAROOT with NO and no QUOTA data
    """

    kind: Kind
    after: int = 0
    seed: int = 0
    every: bool = False


@dataclass
class ProxyStats:
    connections: int = 0
    fired: list[str] = field(default_factory=list)


class FaultProxy:
    def __init__(self, upstream_port: int, faults: dict[int, Fault] | None = None) -> None:
        self.upstream_port = upstream_port
        self.faults = dict(faults or {})
        self.stats = ProxyStats()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for s in self._sockets:
                _reset(s)

    def _fault_for(self, n: int) -> Fault:
        if n in self.faults:
            return self.faults[n]
        every = [f for f in self.faults.values() if f.every]
        return every[0] if every else Fault("pass")

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.stats.connections += 1
                n = self.stats.connections
            fault = self._fault_for(n)
            if fault.kind == "refuse":
                self.stats.fired.append(f"conn {n}: refused")
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            _Link(self, n, fault, client, upstream).start()


def _reset(s: socket.socket) -> None:
    """Drop the connection at once, as a crashed peer or a firewall would. shutdown()
    first: close() alone leaves a recv() blocked in the other pump holding the socket."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()


class _Link:
    """One proxied connection: a pump per direction, the fault applied server -> client."""

    def __init__(
        self,
        proxy: FaultProxy,
        n: int,
        fault: Fault,
        client: socket.socket,
        upstream: socket.socket,
    ) -> None:
        self.proxy, self.n, self.fault = proxy, n, fault
        self.client, self.upstream = client, upstream
        self.sent = 0  # server -> client bytes forwarded
        self.cut_at: int | None = fault.after if fault.kind in ("cut", "stall") else None
        self.rng = random.Random(fault.seed * 1_000_003 + n)
        self.quota_tags: set[bytes] = set()
        self.pending = b""  # a partial server line (no_quota only)
        self.done = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._pump_up, daemon=True).start()
        threading.Thread(target=self._pump_down, daemon=True).start()

    def _finish(self) -> None:
        if not self.done.is_set():
            self.done.set()
            _reset(self.client)
            _reset(self.upstream)

    def _pump_up(self) -> None:
        try:
            while not self.done.is_set():
                data = self.client.recv(65536)
                if not data:
                    break
                if self.fault.kind == "no_quota":
                    for line in data.split(b"\r\n"):
                        parts = line.split(b" ", 2)
                        if len(parts) >= 2 and parts[1].upper() == b"GETQUOTAROOT":
                            self.quota_tags.add(parts[0])
                self.upstream.sendall(data)
        except OSError:
            pass
        self._finish()

    def _pump_down(self) -> None:
        try:
            while not self.done.is_set():
                data = self.upstream.recv(65536)
                if not data:
                    break
                if self.fault.kind == "no_quota":
                    data = self._rewrite_quota(data)
                elif self.fault.kind == "cut_in_fetch" and self.cut_at is None:
                    at = data.find(b" FETCH (")
                    if at >= 0:
                        within = self.fault.after or 3000
                        self.cut_at = self.sent + at + self.rng.randint(1, within)
                if self.cut_at is not None and self.sent + len(data) >= self.cut_at:
                    keep = max(self.cut_at - self.sent, 0)
                    self.client.sendall(data[:keep])
                    self.sent += keep
                    self.proxy.stats.fired.append(
                        f"conn {self.n}: {self.fault.kind} after {self.sent} bytes"
                    )
                    if self.fault.kind == "stall":
                        self.done.wait()  # hold both sockets open and silent
                        return
                    break
                self.client.sendall(data)
                self.sent += len(data)
        except OSError:
            pass
        self._finish()

    def _rewrite_quota(self, data: bytes) -> bytes:
        lines = (self.pending + data).split(b"\r\n")
        self.pending = lines.pop()
        out = []
        for line in lines:
            if line.startswith((b"* QUOTA ", b"* QUOTAROOT ")):
                continue
            tag = line.split(b" ", 1)[0]
            if tag in self.quota_tags and line[len(tag) :].startswith(b" OK"):
                self.proxy.stats.fired.append(f"conn {self.n}: GETQUOTAROOT answered NO")
                line = tag + b" NO Quota not available"
            out.append(line + b"\r\n")
        return b"".join(out)
