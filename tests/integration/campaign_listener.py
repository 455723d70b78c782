"""A TCP listener on 127.0.0.1 that stands in for a member's API server in the bad-input
campaign: it records every connection's bytes and answers by the first segment of the path.

It speaks just enough HTTP for a kubernetes client: `/401/...`, `/403/...` and `/500/...`
answer with that status and a Status body, `/hang/...` holds the connection open without a
word (until `HANG_S` passes or the listener stops), `/garbage/...` answers bytes that are not
HTTP, anything else 404. It never answers 200, so no kubeconfig pointed here can make a member
Reachable. A TLS handshake is recorded as the bytes it is and answered with a 400.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass

READ_LIMIT = 1 << 20
READ_TIMEOUT_S = 3.0
HANG_S = 8.0
REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error"}


@dataclass(frozen=True)
class Connection:
    received: bytes

    @property
    def request_line(self) -> str:
        return self.received.split(b"\r\n", 1)[0].decode("latin-1")

    @property
    def path(self) -> str:
        parts = self.request_line.split(" ")
        return parts[1] if len(parts) >= 3 and parts[1].startswith("/") else ""


class RecordingListener:
    def __init__(self, name: str) -> None:
        self.name = name
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._connections: list[Connection] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._server.listen(64)
        self._server.settimeout(0.2)
        accepting = threading.Thread(target=self._accept, name=f"{self.name}-accept", daemon=True)
        accepting.start()
        self._threads.append(accepting)

    def stop(self) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=READ_TIMEOUT_S + 1)
        self._server.close()

    @property
    def connections(self) -> list[Connection]:
        with self._lock:
            return list(self._connections)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                peer, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            serving = threading.Thread(target=self._serve, args=(peer,), daemon=True)
            serving.start()
            with self._lock:
                self._threads = [thread for thread in self._threads if thread.is_alive()]
                self._threads.append(serving)

    def _serve(self, peer: socket.socket) -> None:
        with peer:
            received = _read_head(peer)
            connection = Connection(received)
            with self._lock:
                self._connections.append(connection)
            mode = connection.path.split("/")[1] if connection.path.count("/") >= 2 else ""
            try:
                if mode == "hang":
                    self._stop.wait(HANG_S)
                elif mode == "garbage":
                    peer.sendall(b"\x00\xff\xfe not an HTTP answer \r\n\r\n")
                elif not connection.path:
                    peer.sendall(_answer(400))
                else:
                    peer.sendall(_answer(int(mode) if mode in ("401", "403", "500") else 404))
            except OSError:
                pass  # the client gave up first


def _read_head(peer: socket.socket) -> bytes:
    """What the client sends before it waits for an answer: an HTTP head, or a TLS hello."""
    peer.settimeout(READ_TIMEOUT_S)
    received = b""
    while len(received) < READ_LIMIT and b"\r\n\r\n" not in received:
        try:
            chunk = peer.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        received += chunk
        if not received[:1].isalpha():
            break  # not HTTP (a TLS hello): one read is all it sends before it waits
    return received


def _answer(code: int) -> bytes:
    reason = REASONS.get(code, "Bad Request")
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": reason.lower(),
            "reason": reason.replace(" ", ""),
            "code": code,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
