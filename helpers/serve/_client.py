"""A small client for the web app, on the standard library only (``urllib``).

What a program that calls the service does: send images as ``multipart/form-data``, read
the JSON answers, and turn a refusal (4xx) or a failure (5xx) into an exception that says
why. The notebook of the deployment chapter and the tests use it; any HTTP client works.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Sequence
from typing import Any


class ServiceError(RuntimeError):
    """The service answered with an error status.

    Attributes:
        status: the HTTP status (413, 415, 500, ...).
        detail: the ``detail`` of the JSON answer, or the answer's text.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


def encode_multipart(
    files: Sequence[tuple[str, str, bytes]], boundary: str | None = None
) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of ``(field, filename, data)`` parts, and its type.

    >>> body, content_type = encode_multipart([("file", "a.png", b"x")], boundary="b")
    >>> content_type
    'multipart/form-data; boundary=b'
    >>> body.startswith(b'--b\\r\\nContent-Disposition: form-data; name="file"; filename="a.png"')
    True
    """
    boundary = boundary or uuid.uuid4().hex
    parts = []
    for field, filename, data in files:
        name = urllib.parse.quote(filename, safe=" ._-")  # no quotes or line breaks
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class ServiceClient:
    """Call a running app (:func:`helpers.serve.start_server`, ``python -m helpers serve``).

    Args:
        url: the server's address, ``http://host:port``.
        timeout: seconds to wait for each answer.

    >>> client = ServiceClient("http://127.0.0.1:8000")  # doctest: +SKIP
    >>> client.predict(open("cat.jpg", "rb").read())["label"]  # doctest: +SKIP
    'cat'
    """

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, path: str, files: Sequence[tuple[str, str, bytes]] | None = None) -> bytes:
        """GET ``path``, or POST ``files`` to it; the answer's body. ``ServiceError`` on 4xx/5xx."""
        request = urllib.request.Request(self.url + path, method="GET")
        if files is not None:
            body, content_type = encode_multipart(files)
            headers = {"Content-Type": content_type}
            request = urllib.request.Request(self.url + path, body, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            text = err.read().decode("utf-8", errors="replace")
            try:
                detail = json.loads(text)["detail"]
            except (ValueError, KeyError, TypeError):
                detail = text
            raise ServiceError(err.code, str(detail)) from None

    def health(self) -> dict[str, Any]:
        """``GET /health``: the model served and its version."""
        return json.loads(self._call("/health"))

    def predict(self, image: bytes, *, filename: str = "image", topk: int = 5) -> dict[str, Any]:
        """``POST /predict``: the ``topk`` classes of one encoded image."""
        return json.loads(self._call(f"/predict?topk={topk}", [("file", filename, image)]))

    def predict_batch(
        self, images: Sequence[bytes], *, filenames: Sequence[str] | None = None, topk: int = 5
    ) -> dict[str, Any]:
        """``POST /predict/batch``: one result per image, in order."""
        names = filenames or [f"image-{i}" for i in range(len(images))]
        files = [("files", name, data) for name, data in zip(names, images, strict=True)]
        return json.loads(self._call(f"/predict/batch?topk={topk}", files))

    def explain(self, image: bytes, *, filename: str = "image") -> bytes:
        """``POST /explain``: the explanation overlay of one image, as PNG bytes."""
        return self._call("/explain", [("file", filename, image)])

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus metrics, as text."""
        return self._call("/metrics").decode("utf-8")
