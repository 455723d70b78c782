"""Kopf handlers, kept thin: objects become snapshots, pure functions decide, adapters apply.

Importing this package registers every handler with Kopf.
"""

from continuum.operator.handlers import jobs, members, placements, settings

__all__ = ["jobs", "members", "placements", "settings"]
