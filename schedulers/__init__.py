"""Pure placement policies: no Kubernetes, Kopf, Ray or Prometheus imports (import-linter)."""
