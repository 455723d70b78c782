"""A minimal Kopf operator for the smoke test: it stamps a greeting into the status on create."""

from __future__ import annotations

from typing import Any

import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = "smoke.testbed.continuum.dev/finalizer"
    settings.watching.server_timeout = 30


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # Reads KUBECONFIG when called; the kubernetes client reads it once, at import.
    return kopf.login_with_kubeconfig(**kwargs)


@kopf.on.create("testbed.continuum.dev", "v1", "smoketests")
def greet(spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
    patch.status["greeting"] = f"hello {spec['name']}"
