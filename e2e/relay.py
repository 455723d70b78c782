"""A TCP relay on loopback that a test can cut and restore: what one process (a Pull member's
agent, say) sees of its path to a server, without a sites network. Cut, it forwards nothing and
answers nothing: connections open and new ones are taken, then hang, as over a partitioned
link (not refused, which would tell the client at once). Restored, the hung connections are
closed and new ones are forwarded again.
"""

from __future__ import annotations

import contextlib
import socket
import threading

BUFFER = 65536
ACCEPT_TIMEOUT_S = 0.2


class Relay:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(ACCEPT_TIMEOUT_S)
        self.address = self._listener.getsockname()[:2]
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._held: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)

    def start(self) -> Relay:
        self._thread.start()
        return self

    def cut(self) -> None:
        """From now on nothing passes; open connections hang."""
        self._cut.set()

    def restore(self) -> None:
        """Closes what hung while cut; new connections are forwarded again."""
        self._cut.clear()
        with self._lock:
            held, self._held = self._held, set()
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            sockets = self._sockets | self._held
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                with self._lock:
                    self._held.add(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        """Copies one direction until either end closes; while cut, what arrives is held back,
        and the connection is closed on restore, as a partition's would time out."""
        try:
            while not self._stop.is_set():
                data = source.recv(BUFFER)
                if not data:
                    break
                if self._cut.is_set():
                    with self._lock:
                        self._held.update((source, target))
                    continue
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._sockets.difference_update((source, target))
