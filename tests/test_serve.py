"""The serving stage (helpers.serve): every endpoint, hostile uploads answered with 4xx JSON
while the app keeps serving, Prometheus metrics, the command line, and a real server."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from helpers import export as ex
from helpers import serve
from helpers.__main__ import build_parser, main
from tests.conftest import REPO_ROOT
from tests.serve_fixtures import (
    encode,
    noise_image,
    png_header_only,
    synthetic_pictures,
    train_tiny_checkpoint,
)

MAX_UPLOAD = 50_000  # bytes: small, so "too large" is cheap to send


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_checkpoint(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def predictor(checkpoint) -> ex.Predictor:
    return ex.Predictor.from_path(checkpoint)


@pytest.fixture
def app(predictor):
    return serve.create_app(predictor, max_upload_bytes=MAX_UPLOAD, model_version="test-7")


@pytest.fixture
def client(app) -> TestClient:
    with TestClient(app) as client:
        yield client


def _png(seed: int = 0) -> bytes:
    return encode(synthetic_pictures(3)[seed])


def _sample(app, name: str, labels: dict[str, str] | None = None) -> float:
    value = app.state.settings.metrics.registry.get_sample_value(name, labels or {})
    return value or 0.0


def _assert_healthy(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


# ---------------------------------------------------------------------------------------------
# The endpoints
# ---------------------------------------------------------------------------------------------


def test_predict_returns_topk_labels_probabilities_and_version(client, predictor) -> None:
    picture = synthetic_pictures(1)[0]
    response = client.post("/predict", files={"file": ("cat.png", encode(picture), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "test-7" and body["filename"] == "cat.png"
    assert len(body["top"]) == 5 and (body["width"], body["height"]) == (32, 32)
    expected = predictor.predict([picture], topk=5)[0]
    assert [p["label"] for p in body["top"]] == [label for label, _ in expected]
    assert [p["probability"] for p in body["top"]] == pytest.approx([p for _, p in expected])
    assert body["label"] == expected[0][0] and response.headers["x-content-type-options"]
    photo = encode(picture.resize((400, 300)), "JPEG")  # decoded at 1/8 scale, as in the ETL
    raw = client.post("/predict?topk=2", content=photo)  # a raw body, not multipart
    assert raw.status_code == 200 and len(raw.json()["top"]) == 2
    assert (raw.json()["width"], raw.json()["height"]) == (400, 300)  # as uploaded


def test_batch_answers_each_file_in_order(client) -> None:
    files = [("files", (f"{i}.png", _png(i), "image/png")) for i in range(3)]
    response = client.post("/predict/batch?topk=3", files=files)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["filename"] for r in results] == ["0.png", "1.png", "2.png"]
    assert all(len(r["top"]) == 3 for r in results)
    bad = [*files, ("files", ("note.txt", b"not an image", "image/png"))]
    response = client.post("/predict/batch", files=bad)
    assert response.status_code == 415 and "File 4 (note.txt)" in response.json()["detail"]


def test_explain_returns_a_png_overlay(client) -> None:
    response = client.post("/explain", files={"file": ("a.png", _png(), "image/png")})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")
    assert response.headers["x-model-version"] == "test-7"


def test_explain_without_an_eager_model_is_501(predictor) -> None:
    logits = lambda images: np.zeros((len(images), 10), dtype=np.float32)  # noqa: E731
    export_only = ex.Predictor(logits, predictor.meta, backend="onnx", checkpoint=None)
    with TestClient(serve.create_app(export_only)) as client:
        response = client.post("/explain", files={"file": ("a.png", _png(), "image/png")})
        assert response.status_code == 501 and "checkpoint" in response.json()["detail"]
        assert client.get("/health").json()["can_explain"] is False


def test_health_page_docs_and_metrics(client, app) -> None:
    health = client.get("/health").json()
    assert health["model"] == "simple_cnn" and health["model_version"] == "test-7"
    assert health["backend"] == "torch" and len(health["classes"]) == 10
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="file"', 'id="label"', 'id="bars"', 'id="overlay"', 'id="preview"'):
        assert element in page.text
    assert "<script src" not in page.text and "http" not in page.headers["content-security-policy"]
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/explain", "/health"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "http_requests_total" in metrics.text
    assert 'model_info{backend="torch",model="simple_cnn",version="test-7"} 1.0' in metrics.text


def test_metrics_move_with_requests(client, app) -> None:
    ok = {"path": "/predict", "method": "POST", "status": "200"}
    before = _sample(app, "http_requests_total", ok)
    response = client.post("/predict", files={"file": ("a.png", _png(), "image/png")})
    label = response.json()["label"]
    client.post("/predict", content=b"")
    assert _sample(app, "http_requests_total", ok) == before + 1
    assert _sample(app, "http_requests_total", {**ok, "status": "400"}) == 1
    assert _sample(app, "predictions_total", {"label": label}) == 1
    assert _sample(app, "http_request_duration_seconds_count", {"path": "/predict"}) == 2
    assert _sample(app, "upload_bytes_count") == 1 and _sample(app, "upload_bytes_sum") > 0
    assert _sample(app, "upload_pixels_sum") == 32 * 32
    assert _sample(app, "rejected_uploads_total", {"reason": "EmptyImageError"}) == 1
    client.get("/no/such/page")
    missing = {"path": "unmatched", "method": "GET", "status": "404"}
    assert _sample(app, "http_requests_total", missing) == 1


# ---------------------------------------------------------------------------------------------
# Hostile input: 4xx JSON, and the app keeps answering
# ---------------------------------------------------------------------------------------------


def _multipart(data: bytes, name: str = "x.png") -> dict:
    return {"files": {"file": (name, data, "image/png")}}


HOSTILE = {
    "empty file": (_multipart(b""), 400, "empty"),
    "empty raw body": ({"content": b""}, 400, "empty"),
    "not an image": (_multipart(b"<?php echo 'hi'; ?>", "shell.png"), 415, "not an image"),
    "gif": (_multipart(encode(noise_image(8, 8), "GIF"), "a.png"), 415, "GIF"),
    "tiff": (_multipart(encode(noise_image(8, 8), "TIFF"), "a.jpg"), 415, "TIFF"),
    "over the size limit": (_multipart(encode(noise_image(200, 200))), 413, "limit"),
    "decompression bomb": (_multipart(png_header_only(40_000, 40_000)), 413, "pixels"),
    "too many pixels": (_multipart(png_header_only(6000, 6000)), 413, "decompression"),
    "1 x 100000": (_multipart(png_header_only(1, 100_000)), 413, "each side"),
    "0 x 10": (_multipart(png_header_only(0, 10)), 415, ""),  # PIL: not a valid PNG
    "truncated png": (_multipart(encode(noise_image(64, 64))[:400]), 400, "truncated"),
    "truncated jpeg": (_multipart(encode(noise_image(64, 64), "JPEG")[:300]), 400, ""),
    "wrong field": ({"files": {"image": ("a.png", b"x", "image/png")}}, 400, "field 'file'"),
    "two files": (
        {"files": [("file", ("a.png", b"x", "image/png")), ("file", ("b.png", b"y", "image/png"))]},
        400,
        "/predict/batch",
    ),
    "broken multipart": (
        {"content": b"garbage", "headers": {"content-type": "multipart/form-data; boundary=zz"}},
        400,
        "malformed",
    ),
    "multipart without boundary": (
        {"content": b"x", "headers": {"content-type": "multipart/form-data"}},
        400,
        "boundary",
    ),
}


@pytest.mark.parametrize("path", ["/predict", "/explain"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_uploads_get_4xx_json_and_the_app_stays_up(client, path, case) -> None:
    request, status, message = HOSTILE[case]
    response = client.post(path, **request)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["detail"]
    _assert_healthy(client)


def test_an_oversized_stream_is_cut_off_without_a_content_length(client, app) -> None:
    def chunks():
        for _ in range(100):  # 100 x 4 KiB: past the limit after 13 chunks
            yield b"\x89PNG" + b"\x00" * 4092

    response = client.post("/predict", content=chunks())
    assert response.status_code == 413 and "limit" in response.json()["detail"]
    assert _sample(app, "rejected_uploads_total", {"reason": "ImageTooLargeError"}) == 1
    too_many = [("files", (f"{i}.png", b"x", "image/png")) for i in range(17)]
    assert client.post("/predict/batch", files=too_many).status_code == 413
    bad_query = client.post("/predict?topk=0", content=_png())
    assert bad_query.status_code == 422 and "detail" in bad_query.json()
    _assert_healthy(client)


def test_create_app_rejects_bad_limits(predictor) -> None:
    with pytest.raises(ValueError, match="max_upload_bytes"):
        serve.create_app(predictor, max_upload_bytes=0)


# ---------------------------------------------------------------------------------------------
# Command line and a real server
# ---------------------------------------------------------------------------------------------


def test_cli_serve_defaults_to_loopback_and_reports_bad_models(tmp_path, capsys) -> None:
    args = build_parser().parse_args(["serve", "--model", "m.onnx"])
    assert (args.host, args.port, args.backend, args.threads) == ("127.0.0.1", 8000, "auto", 1)
    assert (args.workers, args.concurrency, args.access_log) == (1, None, False)
    assert main(["serve", "--model", str(tmp_path / "missing.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_serve_refuses_zero_workers(checkpoint, capsys) -> None:
    assert main(["serve", "--model", str(checkpoint), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_app_spec_builds_the_app_each_worker_serves(checkpoint, monkeypatch) -> None:
    spec = serve.AppSpec(model=str(checkpoint), max_upload_bytes=MAX_UPLOAD, max_concurrency=3)
    monkeypatch.setenv("HELPERS_SERVE_APP", json.dumps(dataclasses.asdict(spec)))
    app = serve.app_from_environment()
    assert app.state.settings.max_upload_bytes == MAX_UPLOAD
    assert app.state.settings.limiter.total_tokens == 3
    with TestClient(app) as client:
        assert client.get("/health").json()["model"] == "simple_cnn"
    with pytest.raises(ValueError, match="workers"):
        serve.run_workers(spec, workers=0)


class _CountingRunner:
    """Logits of zeros, slowly, recording how many calls overlap."""

    def __init__(self) -> None:
        self.lock, self.active, self.most = threading.Lock(), 0, 0

    def __call__(self, images) -> np.ndarray:
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.2)  # long enough for every request to arrive meanwhile
        with self.lock:
            self.active -= 1
        return np.zeros((len(images), 10), dtype=np.float32)


@pytest.mark.parametrize("limit", [1, 3])
def test_at_most_max_concurrency_requests_are_classified_at_once(predictor, limit) -> None:
    runner = _CountingRunner()
    slow = ex.Predictor(runner, predictor.meta, backend="onnx")
    runner.most = 0  # the constructor's check ran once
    app = serve.create_app(slow, max_concurrency=limit)
    with serve.start_server(app) as server:
        url = server.url + "/predict"

        def post(_: int) -> int:
            with urllib.request.urlopen(_post_file(url, _png()), timeout=30) as response:
                return response.status

        with ThreadPoolExecutor(max_workers=6) as pool:
            assert list(pool.map(post, range(6))) == [200] * 6
    assert runner.most == limit
    with pytest.raises(ValueError, match="max_concurrency"):
        serve.create_app(slow, max_concurrency=0)


def _post_file(url: str, data: bytes, name: str = "a.png") -> urllib.request.Request:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return urllib.request.Request(url, data=body, headers=headers, method="POST")


def test_a_real_server_answers_over_http_and_stops(app) -> None:
    with serve.start_server(app) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url + "/health", timeout=10) as response:
            assert json.load(response)["model_version"] == "test-7"
        with urllib.request.urlopen(_post_file(server.url + "/predict", _png()), timeout=10) as r:
            assert len(json.load(r)["top"]) == 5
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(_post_file(server.url + "/predict", b"GIF89a..."), timeout=10)
        assert caught.value.code == 415 and "detail" in json.load(caught.value)
        with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
            assert 'status="415"' in response.read().decode()
        assert server.running
    assert not server.running  # the with block stopped it
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "/health", timeout=2)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_healthy(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise AssertionError(f"no answer from {url} (exit status {process.poll()})")


@pytest.mark.slow
def test_cli_serves_from_worker_processes(checkpoint, tmp_path) -> None:
    """``--workers 2``: two processes, each building the app from the spec, share the port."""
    port = _free_port()
    command = [sys.executable, "-m", "helpers", "serve", "--model", str(checkpoint)]
    command += ["--port", str(port), "--workers", "2"]
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(url, process)
        with urllib.request.urlopen(_post_file(url + "/predict", _png()), timeout=30) as r:
            assert len(json.load(r)["top"]) == 5
        tasks = Path(f"/proc/{process.pid}/task")
        if tasks.is_dir():  # Linux: the supervisor's children
            children = [c for t in tasks.iterdir() for c in (t / "children").read_text().split()]
            assert len(children) >= 2
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "2 workers" in (tmp_path / "server.log").read_text()


def test_the_page_is_packaged_with_the_module() -> None:
    assert (Path(serve.__file__).parent / "index.html").is_file()


def test_the_client_calls_every_endpoint_and_raises_on_refusals(app) -> None:
    with serve.start_server(app) as server:
        client = serve.ServiceClient(server.url, timeout=30)
        assert client.health()["model_version"] == "test-7"
        answer = client.predict(_png(), filename='odd "name".png', topk=3)
        assert len(answer["top"]) == 3 and answer["filename"] == "odd %22name%22.png"
        batch = client.predict_batch([_png(0), _png(1)], topk=2)
        assert [len(r["top"]) for r in batch["results"]] == [2, 2]
        assert client.explain(_png()).startswith(b"\x89PNG")
        with pytest.raises(serve.ServiceError) as caught:
            client.predict(b"GIF89a and more")
        assert caught.value.status == 415 and "not an image" in caught.value.detail
        assert 'status="415"' in client.metrics()
