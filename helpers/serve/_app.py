"""The FastAPI app: predictions, explanations, health, metrics and an upload page.

Endpoints (OpenAPI docs at ``/docs``):

* ``POST /predict``: one image (form field ``file``, or the raw body) -> top-k JSON.
* ``POST /predict/batch``: several images (form field ``files``) -> one result each.
* ``POST /explain``: one image -> a PNG of the explanation overlay.
* ``GET /health``: the model served and whether the app answers.
* ``GET /metrics``: Prometheus metrics (requests, latency, classes, upload sizes).
* ``GET /``: a self-contained page to upload an image and see the answer.

Every refused input gets a 4xx answer with a JSON ``{"detail": ...}`` and the app keeps
serving: an empty body (400), bytes that are not an image or not JPEG, PNG, WebP or BMP
(415, judged by content, not by the file name or declared type), a body over the limit
(413, refused as soon as it is exceeded), too many pixels or too long a side (413, checked
from the header before decoding), a truncated or damaged file (400).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from helpers.export import (
    ExplainUnavailableError,
    ImageRejected,
    ImageTooLargeError,
    Predictor,
    load_image,
    open_image,
)

from ._metrics import ServeMetrics
from ._upload import BadUploadError, Part, files_from_body, read_body

T = TypeVar("T")
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # the largest request body, all files together
DEFAULT_MAX_FILES = 16  # images per /predict/batch request
_PAGE_POLICY = (  # the page loads nothing from elsewhere: inline script and style only
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src 'self' blob: data:; connect-src 'self'; form-action 'none'; base-uri 'none'"
)


# ---------------------------------------------------------------------------------------------
# Response schemas (they make the OpenAPI docs)
# ---------------------------------------------------------------------------------------------


class Prediction(BaseModel):
    """One class and its probability."""

    label: str
    probability: float


class ImageResult(BaseModel):
    """The answer for one image."""

    filename: str | None
    label: str
    probability: float
    top: list[Prediction]
    width: int
    height: int


class PredictResponse(ImageResult):
    """``POST /predict``: the top-k classes of one image."""

    model_version: str


class BatchResponse(BaseModel):
    """``POST /predict/batch``: one result per image, in upload order."""

    model_version: str
    results: list[ImageResult]


class HealthResponse(BaseModel):
    """``GET /health``."""

    status: str
    model: str
    model_version: str
    backend: str
    image_size: int
    classes: list[str]
    can_explain: bool


# ---------------------------------------------------------------------------------------------
# The work behind the endpoints
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    """What every endpoint needs: the predictor, the metrics and the limits."""

    predictor: Predictor
    metrics: ServeMetrics
    version: str
    max_upload_bytes: int
    max_pixels: int
    max_side: int
    max_files: int
    limiter: anyio.CapacityLimiter  # requests decoded and classified at once


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


async def _in_worker(settings: _Settings, work: Callable[..., T], *args: Any) -> T:
    """Run ``work(settings, *args)`` in a worker thread, at most ``limiter`` of them at once.

    The event loop stays free to read requests meanwhile. More worker threads than cores
    would only take turns at the GIL for the Python parts (decoding, preprocessing, top-k)
    and stretch every request's latency; the rest wait their turn in the event loop.
    """
    return await anyio.to_thread.run_sync(work, settings, *args, limiter=settings.limiter)


def _upload_doc(field: str, many: bool) -> dict[str, Any]:
    """The OpenAPI request body of an image upload (the body is read by hand, not declared)."""
    binary = {"type": "string", "format": "binary"}
    schema = {"type": "array", "items": binary} if many else binary
    form = {"type": "object", "required": [field], "properties": {field: schema}}
    content = {"multipart/form-data": {"schema": form}}
    if not many:
        content["application/octet-stream"] = {"schema": binary}
    return {"requestBody": {"required": True, "content": content}}


async def _read_files(request: Request, settings: _Settings, fields: tuple[str, ...]) -> list[Part]:
    """The uploaded files of a request, within the byte and file-count limits."""
    body = await read_body(request.headers, request.stream(), settings.max_upload_bytes)
    parts = files_from_body(body, request.headers.get("content-type"), fields)
    if len(parts) > settings.max_files:
        raise ImageTooLargeError(f"{len(parts)} files sent; at most {settings.max_files}.")
    return parts


def _decode(settings: _Settings, part: Part) -> tuple[Image.Image, tuple[int, int]]:
    """Decode one uploaded file with the app's limits; record and return its original size."""
    settings.metrics.upload_bytes.observe(len(part.data))
    image = open_image(bytes(part.data), max_pixels=settings.max_pixels, max_side=settings.max_side)
    width, height = image.size  # before a JPEG is decoded at a reduced scale
    settings.metrics.upload_pixels.observe(width * height)
    return load_image(image, image_size=settings.predictor.meta.image_size), (width, height)


def _decode_all(
    settings: _Settings, parts: list[Part]
) -> list[tuple[Image.Image, tuple[int, int]]]:
    """Decode every file (image and original size); an error names the file of several."""
    images = []
    for number, part in enumerate(parts, start=1):
        try:
            images.append(_decode(settings, part))
        except ImageRejected as err:
            if len(parts) == 1:
                raise
            name = f" ({part.filename})" if part.filename else ""
            raise type(err)(f"File {number}{name}: {err}") from err
    return images


def _classify(settings: _Settings, parts: list[Part], topk: int) -> list[ImageResult]:
    """Decode and classify the files as one batch (runs in a worker thread)."""
    decoded = _decode_all(settings, parts)
    answers = settings.predictor.predict([image for image, _ in decoded], topk=topk)
    results = []
    for part, (_, (width, height)), top in zip(parts, decoded, answers, strict=True):
        settings.metrics.predictions.labels(label=top[0][0]).inc()
        results.append(
            ImageResult(
                filename=part.filename,
                label=top[0][0],
                probability=top[0][1],
                top=[Prediction(label=label, probability=p) for label, p in top],
                width=width,
                height=height,
            )
        )
    return results


def _explain(settings: _Settings, parts: list[Part]) -> bytes:
    """Decode one file and render its explanation as PNG bytes (runs in a worker thread)."""
    ((image, _),) = _decode_all(settings, parts)
    return settings.predictor.explain(image)


def _single(parts: list[Part]) -> list[Part]:
    """``parts`` when it holds one file; else a 400 that points to the batch endpoint."""
    if len(parts) != 1:
        raise BadUploadError(f"Send one image here ({len(parts)} sent); use /predict/batch.")
    return parts


# ---------------------------------------------------------------------------------------------
# Error answers and per-request metrics
# ---------------------------------------------------------------------------------------------


def _add_error_handlers(app: FastAPI, metrics: ServeMetrics) -> None:
    """Refused inputs become 4xx JSON; anything unexpected a 500 JSON (the app keeps running)."""

    async def rejected(_request: Request, err: Exception) -> JSONResponse:
        metrics.rejected.labels(reason=type(err).__name__).inc()
        return JSONResponse({"detail": str(err)}, status_code=getattr(err, "status_code", 400))

    async def unavailable(_request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=501)

    async def internal(_request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"Internal error: {type(err).__name__}"}, status_code=500)

    app.add_exception_handler(ImageRejected, rejected)
    app.add_exception_handler(ExplainUnavailableError, unavailable)
    app.add_exception_handler(Exception, internal)


class _Observer:
    """ASGI middleware: count every request by route and status, time it, forbid sniffing.

    A plain ASGI wrapper rather than ``@app.middleware("http")``: Starlette's
    ``BaseHTTPMiddleware`` runs each request in an extra task and streams the response
    through a queue, which costs more per request than the rest of this middleware.
    """

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("X-Content-Type-Options", "nosniff")
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            route = scope.get("route")  # set by the router on this same scope
            path = getattr(route, "path", "unmatched")  # the template: few distinct labels
            self.metrics.observe_request(path, scope["method"], status, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------


def _add_prediction_routes(app: FastAPI, settings: _Settings) -> None:
    """``POST /predict``, ``POST /predict/batch`` and ``POST /explain``."""
    topk_query = Query(5, ge=1, le=1000, description="How many classes to return")

    @app.post("/predict", response_model=PredictResponse, openapi_extra=_upload_doc("file", False))
    async def predict(request: Request, topk: int = topk_query) -> PredictResponse:
        """Classify one image: the form field ``file``, or the raw request body."""
        parts = _single(await _read_files(request, settings, ("file",)))
        (result,) = await _in_worker(settings, _classify, parts, topk)
        return PredictResponse(model_version=settings.version, **result.model_dump())

    @app.post(
        "/predict/batch", response_model=BatchResponse, openapi_extra=_upload_doc("files", True)
    )
    async def predict_batch(request: Request, topk: int = topk_query) -> BatchResponse:
        """Classify several images (form field ``files``, repeated) in one batch."""
        parts = await _read_files(request, settings, ("files", "file"))
        results = await _in_worker(settings, _classify, parts, topk)
        return BatchResponse(model_version=settings.version, results=results)

    @app.post(
        "/explain",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}, "description": "The overlay, as PNG"}},
        openapi_extra=_upload_doc("file", False),
    )
    async def explain(request: Request) -> Response:
        """The explanation of the predicted class, over the image as the model saw it (PNG)."""
        parts = _single(await _read_files(request, settings, ("file",)))
        png = await _in_worker(settings, _explain, parts)
        return Response(png, media_type="image/png", headers={"X-Model-Version": settings.version})


def _add_service_routes(app: FastAPI, settings: _Settings) -> None:
    """``GET /health``, ``GET /metrics`` and the page at ``GET /``."""
    predictor = settings.predictor
    page = resources.files(__package__).joinpath("index.html").read_text(encoding="utf-8")

    @app.get("/health", response_model=HealthResponse)
    def health() -> HealthResponse:
        """Whether the app answers, and which model it serves."""
        return HealthResponse(
            status="ok",
            model=predictor.meta.model_name,
            model_version=settings.version,
            backend=predictor.backend,
            image_size=predictor.meta.image_size,
            classes=list(predictor.class_names),
            can_explain=predictor.can_explain,
        )

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics, in the text exposition format."""
        return Response(settings.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": _PAGE_POLICY})


def create_app(
    predictor: Predictor,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int | None = None,
    max_side: int | None = None,
    max_files: int = DEFAULT_MAX_FILES,
    max_concurrency: int | None = None,
    model_version: str | None = None,
) -> FastAPI:
    """A FastAPI app that serves ``predictor`` (see the module docstring for the endpoints).

    Args:
        predictor: what classifies (:meth:`helpers.export.Predictor.from_path`).
        max_upload_bytes: the largest request body accepted, all files together.
        max_pixels: the most pixels an image may have; ``None``: the predictor's limit.
        max_side: the most pixels on either side; ``None``: the predictor's limit.
        max_files: the most images in one ``/predict/batch`` request.
        max_concurrency: the most requests decoded and classified at once, each in a
            worker thread; ``None``: the available CPU cores (at least 2). Others wait.
        model_version: reported with every answer; ``None``: the predictor's version.

    Returns:
        The app; run it with :func:`helpers.serve.run_server` or any ASGI server.

    Raises:
        ValueError: for a limit below 1.

    >>> from fastapi.testclient import TestClient  # doctest: +SKIP
    >>> client = TestClient(create_app(Predictor.from_path("best.pt")))  # doctest: +SKIP
    >>> client.get("/health").json()["status"]  # doctest: +SKIP
    'ok'
    """
    limits = {"max_upload_bytes": max_upload_bytes, "max_files": max_files}
    limits["max_pixels"] = predictor.max_pixels if max_pixels is None else max_pixels
    limits["max_side"] = predictor.max_side if max_side is None else max_side
    concurrency = max(2, available_cores()) if max_concurrency is None else max_concurrency
    limits["max_concurrency"] = concurrency
    bad = {key: value for key, value in limits.items() if not isinstance(value, int) or value < 1}
    if bad:
        raise ValueError(f"Limits must be positive integers, got {bad}.")
    version = model_version or predictor.version
    meta = predictor.meta
    metrics = ServeMetrics(model=meta.model_name, version=version, backend=predictor.backend)
    del limits["max_concurrency"]
    settings = _Settings(
        predictor=predictor,
        metrics=metrics,
        version=version,
        limiter=anyio.CapacityLimiter(concurrency),
        **limits,
    )
    app = FastAPI(
        title="Image classifier",
        version=version,
        description=f"Classifies images with {predictor.meta.model_name} "
        f"({predictor.meta.num_classes} classes, {predictor.backend} backend).",
    )
    app.state.settings = settings
    _add_error_handlers(app, metrics)
    app.add_middleware(_Observer, metrics=metrics)
    _add_prediction_routes(app, settings)
    _add_service_routes(app, settings)
    return app
