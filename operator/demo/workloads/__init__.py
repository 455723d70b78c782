"""What the embedded demo's shards run inside Ray: synthetic per-site sensor data, a small
softmax-regression model, federated averaging with per-round checkpoints, and inference.

Plain Python and numpy, with no Ray import at module level:
`continuum.operator.demo.ray_executor` turns these classes into Ray actors pinned to a member
cluster's custom resource.
"""
