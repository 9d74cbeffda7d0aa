"""Autoscaling: how many replicas each deployment runs, decided from its load.

- ``settings``: the spec's ``autoscaling:`` block and the platform's ``capacity:`` block.
- ``signals``: a deployment's load readings and their window averages (pure).
- ``policy``: the reactive and predictive decision (pure): readings, state, settings -> decision.
- ``forecast``: the call-rate model (Holt-Winters, statsmodels), its error and reliability.
- ``capacity``: the machine's CPU and memory budget and how deployments share it (pure).
- ``autoscaler``: one deployment's autoscaler, the same object the controller and the simulator drive.
- ``simulate``: replaying a call-rate trace through the autoscaler (``steady simulate``).
"""
