"""What Continuum's shards run inside Ray, installed in the shard image: synthetic per-site
sensor data, a small softmax-regression model, federated averaging with per-round checkpoints,
inference, and a training job that checkpoints to its job's checkpoint URI and resumes from it.

The embedded demo runs the same code (`continuum.operator.demo.ray_executor` turns the shard
classes into Ray actors). Nothing here imports the operator: a shard knows its job only from
the environment the operator gives its pods (CONTINUUM_*).
"""
