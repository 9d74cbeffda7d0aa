"""Every metric the platform exposes: name, type, help, labels, buckets — in one place.

The gateway's ``/metrics``, the controller's history, alert rules, the Prometheus rule
export and the Grafana export all name metrics through these constants, so a renamed
metric breaks at import, not on a dashboard.

Who writes what:
- gateway processes: calls as clients saw them (``steady_requests_total``, latency,
  in-flight, queued, admission, retries, ejections; streams: time to first chunk,
  chunks, duration and how they ended);
- replicas: handler calls, handler time and batch sizes;
- the controller: replica states, restarts, CPU and memory of each replica, its tick time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                     30.0, 60.0)
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
TICK_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class MetricSpec:
    name: str  # for counters without the _total suffix the exposition adds
    kind: Kind
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    # A value only while its writer lives (gauges; per-replica readings that vanish with the replica).
    live_only: bool = False

    @property
    def exposed_name(self) -> str:
        return f"{self.name}_total" if self.kind == "counter" else self.name


def _spec(name: str, kind: Kind, help: str, *labels: str, buckets: tuple[float, ...] = (),
          live_only: bool = False) -> MetricSpec:
    return MetricSpec(name, kind, help, labels, buckets, live_only or kind == "gauge")


# --- gateway: calls as clients saw them -------------------------------------------------
REQUESTS = _spec("steady_requests", "counter",
                 "Calls answered by the gateway, by deployment, revision that answered ('none' if no replica did),"
                 " handler and HTTP status code", "deployment", "revision", "handler", "code")
REQUEST_DURATION = _spec("steady_request_duration_seconds", "histogram",
                         "Call latency seen at the gateway: queueing, retries and the replica's time",
                         "deployment", "handler", buckets=LATENCY_BUCKETS_S)
INFLIGHT = _spec("steady_inflight_requests", "gauge", "Calls the gateway processes are handling now", "deployment")
QUEUED = _spec("steady_queued_requests", "gauge", "Calls waiting in the gateways for a free replica", "deployment")
ADMISSION = _spec("steady_admission", "counter",
                  "Calls admitted to a replica or shed by admission control (decision: admitted or shed)",
                  "deployment", "decision")
RETRIES = _spec("steady_retries", "counter", "Calls retried on another replica after a failed attempt", "deployment")
EJECTIONS = _spec("steady_ejections", "counter", "Replicas ejected by a gateway's outlier detection", "deployment")
STREAM_BUCKETS_S = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
STREAMS = _spec("steady_streams", "counter",
                "Streamed answers by how they ended (complete, handler_error, client_gone, replica_lost, timed_out)",
                "deployment", "handler", "outcome")
STREAM_FIRST_CHUNK = _spec("steady_stream_first_chunk_seconds", "histogram",
                           "Time from a streamed call's arrival to its first chunk (queueing and retries included)",
                           "deployment", "handler", buckets=LATENCY_BUCKETS_S)
STREAM_CHUNKS = _spec("steady_stream_chunks", "counter", "Chunks (items) passed on by the gateways in streams",
                      "deployment", "handler")
STREAM_DURATION = _spec("steady_stream_duration_seconds", "histogram",
                        "Whole streamed answers, first byte of the call to its last chunk", "deployment", "handler",
                        buckets=STREAM_BUCKETS_S)

# --- replicas: handler calls ------------------------------------------------------------
HANDLER_CALLS = _spec("steady_handler_calls", "counter", "Handler calls inside replicas by status code",
                      "deployment", "revision", "handler", "code")
HANDLER_DURATION = _spec("steady_handler_duration_seconds", "histogram", "Time inside the handler of a replica",
                         "deployment", "revision", "handler", buckets=LATENCY_BUCKETS_S)
HANDLER_INFLIGHT = _spec("steady_handler_inflight_calls", "gauge", "Handler calls running inside replicas now",
                         "deployment")
BATCH_SIZE = _spec("steady_batch_size", "histogram", "Calls per executed batch", "deployment", "handler",
                   buckets=BATCH_BUCKETS)

# --- controller: the processes ------------------------------------------------------------
REPLICAS = _spec("steady_replicas", "gauge", "Replicas by state (starting, ready, unhealthy, ...)",
                 "deployment", "state")
DEPLOYMENT_SECONDS = _spec("steady_deployment_watched_seconds", "counter",
                           "Time the controller watched the deployment", "deployment")
DEPLOYMENT_READY_SECONDS = _spec("steady_deployment_ready_seconds", "counter",
                                 "Time the deployment had at least one ready replica", "deployment")
RESTARTS = _spec("steady_replica_restarts", "counter", "Replica processes restarted by the supervisor",
                 "deployment")
REPLICA_CPU = _spec("steady_replica_cpu_seconds", "counter", "CPU time (user + system) of a running replica",
                    "deployment", "replica", live_only=True)
REPLICA_MEMORY = _spec("steady_replica_resident_memory_bytes", "gauge", "Resident memory of a running replica",
                       "deployment", "replica")
REPLICA_MEMORY_LIMIT = _spec("steady_replica_memory_limit_bytes", "gauge",
                             "The deployment's per-replica memory limit (resources.memory_mb)", "deployment")
LOG_FINDINGS = _spec("steady_log_findings", "counter",
                     "What log analysis found: a new error template, a template's rate jumping after a rollout",
                     "deployment", "kind")
# --- controller: the autoscaler -------------------------------------------------------------
COLD_START_BUCKETS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
DESIRED_REPLICAS = _spec("steady_autoscaler_desired_replicas", "gauge",
                         "Replicas the autoscaler asks for (after the machine's budget)", "deployment")
AUTOSCALER_LOAD = _spec("steady_autoscaler_load", "gauge",
                        "The load the autoscaler follows, all replicas together, in its metric's unit", "deployment",
                        "metric")
FORECAST_RATE = _spec("steady_autoscaler_forecast_rate", "gauge",
                      "Calls/s forecast for when a replica started now is ready (trusted or not)", "deployment")
CAPACITY_LIMITED = _spec("steady_autoscaler_capacity_limited", "gauge",
                         "1 while the deployment wants more replicas than the machine's budget allows", "deployment")
SCALE_DECISIONS = _spec("steady_autoscaler_scale_events", "counter",
                        "Replica count changes made by the autoscaler (direction: up, down)", "deployment", "direction")
COLD_START = _spec("steady_cold_start_seconds", "histogram",
                   "From a call arriving at zero replicas to the first replica ready", "deployment",
                   buckets=COLD_START_BUCKETS_S)
TICK_DURATION = _spec("steady_controller_tick_duration_seconds", "histogram", "Time of one controller tick",
                      buckets=TICK_BUCKETS_S)

ALL: tuple[MetricSpec, ...] = (
    REQUESTS, REQUEST_DURATION, INFLIGHT, QUEUED, ADMISSION, RETRIES, EJECTIONS,
    STREAMS, STREAM_FIRST_CHUNK, STREAM_CHUNKS, STREAM_DURATION,
    HANDLER_CALLS, HANDLER_DURATION, HANDLER_INFLIGHT, BATCH_SIZE,
    REPLICAS, DEPLOYMENT_SECONDS, DEPLOYMENT_READY_SECONDS, RESTARTS, REPLICA_CPU, REPLICA_MEMORY, REPLICA_MEMORY_LIMIT, LOG_FINDINGS, TICK_DURATION,
    DESIRED_REPLICAS, AUTOSCALER_LOAD, FORECAST_RATE, CAPACITY_LIMITED, SCALE_DECISIONS, COLD_START,
)
BY_NAME: dict[str, MetricSpec] = {spec.name: spec for spec in ALL}
