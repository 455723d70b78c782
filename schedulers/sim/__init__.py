"""The benchmark: the simulator, the synthetic scenarios and their generators, the MILP
yardstick, the simulation metrics, and the harness that runs policies side by side.

The operator never imports it; `continuum bench` (the CLI) does.
"""
