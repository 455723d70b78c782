"""Kopf handlers, kept thin: objects become snapshots, pure functions decide, adapters apply.

Importing this package registers every handler with Kopf but the admission webhook's, which
`continuum operator run` imports only when asked to serve it: Kopf refuses to start with
admission handlers and no webhook server.
"""

from continuum.operator.handlers import members, settings

__all__ = ["members", "settings"]
