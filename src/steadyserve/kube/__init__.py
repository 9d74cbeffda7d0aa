"""`steady export kubernetes`: the same spec as Kubernetes manifests (pure builders, one module per kind of thing).

- ``replicas.py``: per deployment, its Deployment, headless Service, PodDisruptionBudget and
  HorizontalPodAutoscaler.
- ``monitoring.py``: ServiceMonitors and a PrometheusRule with the alerts and SLO burn rates.
- ``gateway.py``: the steadyserve gateway as its own Deployment, finding replica pods through
  each deployment's headless Service (DNS), so auth, retries, ejection and shedding hold there too.
- ``image.py``: the Dockerfile that builds the service's image.
- ``export.py``: all of it as files.
"""
