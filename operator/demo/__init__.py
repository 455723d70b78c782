"""The embedded demo: the operator's scheduling cycle and reconcile functions over an in-memory
store, a local Ray node standing in for the member clusters, an emulated network between the
sites, and the workloads the shards run. Nothing of the operator proper imports it."""
