"""Failure anticipation and recovery, pure: the risk detector that turns a member's link
samples into `status.risk`, the heartbeat detector that declares it unreachable, and the
migration planner that says what a Placement change means for the running shards.

The embedded demo feeds them from its emulated links; the operator will feed the same code from
Prometheus. Nothing here reads a clock: every call takes the time it is about.
"""
