"""Serving: a web app that classifies uploaded images, with metrics and an upload page.

The deployment chapter's second half. :func:`create_app` wraps a
:class:`helpers.export.Predictor` in a FastAPI app (``POST /predict``,
``POST /predict/batch``, ``POST /explain``, ``GET /health``, ``GET /metrics``, a page at
``/`` and OpenAPI docs at ``/docs``) that refuses hostile uploads with a 4xx JSON answer and
keeps serving. :func:`run_server` runs it in the foreground (``python -m helpers serve``),
:func:`run_workers` in several processes (``--workers``), :func:`start_server` in a
background thread (notebooks, tests). :class:`ServiceClient` calls it from Python.

Needs the ``serve`` extra: ``pip install "helpers[serve]"``.

Example:
    >>> predictor = Predictor.from_path("exports/model.onnx", threads=2)  # doctest: +SKIP
    >>> with start_server(create_app(predictor)) as server:  # doctest: +SKIP
    ...     print(server.url)
    http://127.0.0.1:53117
"""

from helpers.export import Predictor

from ._app import (
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_UPLOAD_BYTES,
    BatchResponse,
    HealthResponse,
    ImageResult,
    Prediction,
    PredictResponse,
    create_app,
)
from ._client import ServiceClient, ServiceError, encode_multipart
from ._metrics import ServeMetrics
from ._server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    AppSpec,
    BackgroundServer,
    app_from_environment,
    run_server,
    run_workers,
    start_server,
)
from ._upload import BadUploadError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_FILES",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_PORT",
    "AppSpec",
    "BackgroundServer",
    "BadUploadError",
    "BatchResponse",
    "HealthResponse",
    "ImageResult",
    "PredictResponse",
    "Prediction",
    "Predictor",
    "ServeMetrics",
    "ServiceClient",
    "ServiceError",
    "app_from_environment",
    "create_app",
    "encode_multipart",
    "run_server",
    "run_workers",
    "start_server",
]
