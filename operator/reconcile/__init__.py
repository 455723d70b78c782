"""Pure reconcile functions: Kubernetes objects plus a snapshot in, a plan of actions out."""
