"""Prometheus metrics, one registry per app (no process-wide globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "muster_http_requests_total", "HTTP requests served", ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "muster_http_request_seconds", "HTTP request duration", ["method", "route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.sockets = Gauge("muster_sockets_connected", "Socket.IO connections open on this node",
                             registry=self.registry)
        self.socket_connects = Counter(
            "muster_socket_connects_total", "Socket.IO connection attempts", ["outcome"], registry=self.registry
        )
        self.socket_events = Counter(
            "muster_socket_events_total", "Socket.IO events handled", ["event", "outcome"], registry=self.registry
        )
        self.errors = Counter(
            "muster_errors_total", "Unexpected errors (answered with a generic 500 or error ack)", ["where"],
            registry=self.registry,
        )

        # Socket.IO over Redis (server/gateway/manager.py)
        self.sio_redis_emits = Counter(
            "muster_sio_redis_emits_total", "Socket.IO emits by route: published, local_only (Redis skipped), "
            "failed (not published; members told to resync)", ["outcome"], registry=self.registry,
        )
        self.sio_redis_publishes = Counter("muster_sio_redis_publishes_total", "Redis PUBLISH commands sent",
                                           registry=self.registry)
        self.sio_redis_batches = Counter("muster_sio_redis_batches_total", "Pipelined flushes of queued publishes",
                                         registry=self.registry)
        self.sio_redis_received = Counter("muster_sio_redis_received_total", "Emits received from other nodes",
                                          registry=self.registry)
        self.sio_redis_reconnects = Counter("muster_sio_redis_reconnects_total",
                                            "Redis pub/sub reconnects of the Socket.IO manager", registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
