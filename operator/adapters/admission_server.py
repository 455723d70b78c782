"""The validating webhook's HTTPS server in a cluster: every replica serves it (a standby too,
since the chart's Service sends to every Ready pod), with the certificate of
adapters/webhook_tls.py, which it can be given again when renewed without a restart.

It speaks admission.k8s.io/v1 AdmissionReview: the API server posts the object written (and
the old one, on an update), and gets back allowed, or refused with a code and a message. What
it says is the `judge`'s (controller/admission.py); it logs no object, which may hold what a
user did not mean to show.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from continuum.operator.adapters.webhook_certs import TlsMaterial

LOG = logging.getLogger(__name__)
# The API server refuses objects larger than this itself (etcd's limit, with its overhead).
MAX_BODY_BYTES = 3 * 1024 * 1024
# None to admit; else (message, HTTP-like code) to refuse.
Judge = Callable[[str, Mapping[str, Any], Mapping[str, Any] | None], tuple[str, int] | None]


def review_response(review: Mapping[str, Any], judge: Judge) -> dict[str, Any]:
    """The AdmissionReview answering `review`."""
    request = review.get("request") or {}
    body = request.get("object") or {}
    refused = judge(str(request.get("operation") or ""), body, request.get("oldObject"))
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": refused is None}
    if refused is not None:
        message, code = refused
        response["status"] = {"code": code, "message": message}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


class _Handler(BaseHTTPRequestHandler):
    judge: ClassVar[Judge]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            self.send_error(413 if length else 400)
            return
        try:
            review = json.loads(self.rfile.read(length))
            answer = review_response(review, type(self).judge)
        except (ValueError, AttributeError, TypeError):
            self.send_error(400, "not an AdmissionReview")
            return
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("webhook: " + format, *args)


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    contexts: Callable[[], ssl.SSLContext]

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        # The handshake runs in the request's thread, not in the loop that accepts.
        wrapped = self.contexts().wrap_socket(
            connection, server_side=True, do_handshake_on_connect=False
        )
        return wrapped, address


class AdmissionServer:
    def __init__(self, address: str, port: int, judge: Judge) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="continuum-webhook-"))
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        handler = type("AdmissionHandler", (_Handler,), {"judge": staticmethod(judge)})
        self._server = _TlsServer((address, port), handler)
        self._server.contexts = self._current

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def _current(self) -> ssl.SSLContext:
        with self._lock:
            assert self._context is not None, "no certificate loaded"
            return self._context

    def load(self, material: TlsMaterial) -> None:
        """Serves with this certificate from the next connection on."""
        certfile, keyfile = self._directory / "tls.crt", self._directory / "tls.key"
        keyfile.touch(mode=0o600)
        keyfile.write_bytes(material.key)
        certfile.write_bytes(material.certificate)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(certfile, keyfile)
        with self._lock:
            self._context = context

    def start(self) -> AdmissionServer:
        threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
