"""Prometheus metrics of the web app, in a registry of its own.

Each app gets its own :class:`prometheus_client.CollectorRegistry`, so two apps in one
process (tests, a notebook) never share counts and never clash over metric names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # seconds
BYTES_BUCKETS = (1e3, 1e4, 3e4, 1e5, 3e5, 1e6, 3e6, 1e7, 3e7)  # one upload's size
PIXELS_BUCKETS = (1024, 4096, 16_384, 65_536, 262_144, 1e6, 4e6, 16e6, 64e6)  # width * height


class ServeMetrics:
    """The app's counters and histograms.

    Attributes:
        registry: the registry all of them live in (what ``GET /metrics`` exposes).
        requests: ``http_requests_total`` by route ``path``, ``method`` and ``status``.
        latency: ``http_request_duration_seconds`` by route ``path``.
        predictions: ``predictions_total`` by top-1 ``label``.
        upload_bytes: ``upload_bytes``, the size of each uploaded image.
        upload_pixels: ``upload_pixels``, width times height of each decoded image.
        rejected: ``rejected_uploads_total`` by ``reason`` (the error's class).

    Args:
        model: the model's name, for ``model_info``.
        version: the model version, for ``model_info``.
        backend: the predictor's backend, for ``model_info``.
    """

    def __init__(self, *, model: str, version: str, backend: str) -> None:
        self.registry = CollectorRegistry()
        options = {"registry": self.registry}
        self.requests = Counter(
            "http_requests", "HTTP requests", ["path", "method", "status"], **options
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer a request",
            ["path"],
            buckets=LATENCY_BUCKETS,
            **options,
        )
        self.predictions = Counter("predictions", "Top-1 predictions", ["label"], **options)
        self.upload_bytes = Histogram(
            "upload_bytes", "Bytes per uploaded image", buckets=BYTES_BUCKETS, **options
        )
        self.upload_pixels = Histogram(
            "upload_pixels", "Pixels per decoded image", buckets=PIXELS_BUCKETS, **options
        )
        self.rejected = Counter("rejected_uploads", "Uploads refused", ["reason"], **options)
        info = Gauge("model_info", "The model served", ["model", "version", "backend"], **options)
        info.labels(model=model, version=version, backend=backend).set(1)

    def observe_request(self, path: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(path=path, method=method, status=str(status)).inc()
        self.latency.labels(path=path).observe(seconds)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
