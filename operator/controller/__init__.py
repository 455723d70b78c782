"""The controller: the scheduling cycle and its thread, the placement controller's lanes,
convergence of the members, a job's deletion, the shared context and the status writes.

It decides with the pure functions of `reconcile` and `recovery` and acts through `adapters`;
Kopf's handlers (`handlers`) start it and feed it, and it imports nothing of Kopf.
"""
