"""The Kubernetes operator, in layers (docs/architecture.md): cli, demo, handlers, controller,
adapters, reconcile and recovery, api."""
