"""The Kubernetes operator: API models, reconcile functions, Kopf handlers and adapters."""
