"""The member agent (`continuum agent`): a Pull member's side of Continuum. It runs in (or
beside) the member cluster, dials out to the hub only, renews its Lease there, converges the
MemberWorks the hub wrote for it with push mode's plan, and reports back."""
