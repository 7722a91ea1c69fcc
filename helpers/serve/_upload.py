"""Reading uploads within a byte limit, entirely in memory.

FastAPI's ``UploadFile`` spools large files to a temporary file on disk. The web app reads
the request body itself instead: it refuses a declared ``Content-Length`` over the limit
before reading anything, counts the bytes as they stream in and stops at the limit, and
parses ``multipart/form-data`` from memory with python-multipart's streaming parser. No
byte of a request is ever written to disk, and no name from it is used as a path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from helpers.export import EmptyImageError, ImageRejected, ImageTooLargeError


class BadUploadError(ImageRejected):
    """A request body that is not a well-formed upload (bad multipart, missing field)."""

    status_code = 400


@dataclass
class Part:
    """One part of a ``multipart/form-data`` body."""

    name: str  # the form field
    filename: str | None  # as the client sent it: shown back, never used as a path
    data: bytearray = field(default_factory=bytearray)


def _too_large(limit: int) -> ImageTooLargeError:
    """The 413 error for a body over ``limit`` bytes."""
    return ImageTooLargeError(f"The upload is larger than the limit of {limit:,} bytes.")


async def read_body(
    headers: Mapping[str, str], chunks: AsyncIterator[bytes], max_bytes: int
) -> bytes:
    """The request body, refused as soon as it exceeds ``max_bytes``.

    Args:
        headers: the request headers (``Content-Length`` is checked first).
        chunks: the body as it streams in (``request.stream()``).
        max_bytes: the most bytes accepted.

    Returns:
        The body.

    Raises:
        ImageTooLargeError: when the declared or the received length exceeds ``max_bytes``.
        BadUploadError: for a ``Content-Length`` that is not a number.
    """
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise BadUploadError(f"Content-Length {declared!r} is not a number of bytes.")
        if int(declared) > max_bytes:
            raise _too_large(max_bytes)  # refused before a byte of the body is read
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    return bytes(body)


def _disposition(raw: bytes) -> tuple[str, str | None]:
    """The field name and file name of a ``Content-Disposition: form-data`` header."""
    kind, options = parse_options_header(raw)
    if kind.lower() != b"form-data" or b"name" not in options:
        raise BadUploadError("A multipart part lacks a 'Content-Disposition: form-data' name.")
    filename = options.get(b"filename")
    return _text(options[b"name"]), _text(filename) if filename is not None else None


def _text(value: bytes) -> str:
    """Header bytes as text; undecodable bytes become U+FFFD."""
    return value.decode("utf-8", errors="replace")


class _Collector:
    """python-multipart callbacks that gather the parts in memory."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> dict:
        """The callback table for ``MultipartParser``."""
        return {
            "on_part_begin": self._headers.clear,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: self.parts[-1].data.extend(data[start:end]),
        }

    def _header_end(self) -> None:
        self._headers[bytes(self._field).lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        name, filename = _disposition(self._headers.get(b"content-disposition", b""))
        self.parts.append(Part(name=name, filename=filename))


def parse_multipart(body: bytes, content_type: str) -> list[Part]:
    """The parts of a ``multipart/form-data`` body, parsed in memory.

    Args:
        body: the whole request body (already limited in size).
        content_type: the request's ``Content-Type`` header, with its ``boundary``.

    Returns:
        The parts, in order.

    Raises:
        BadUploadError: without a boundary, or for a body that is not valid multipart.
    """
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadUploadError("A multipart/form-data request needs a boundary in Content-Type.")
    collector = _Collector()
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        parser.write(body)
        parser.finalize()
    except MultipartParseError as err:
        raise BadUploadError(f"The multipart body is malformed: {err}") from err
    return collector.parts


def is_multipart(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` header announces ``multipart/form-data``."""
    return (content_type or "").lower().startswith("multipart/form-data")


def files_from_body(body: bytes, content_type: str | None, fields: tuple[str, ...]) -> list[Part]:
    """The uploaded files: the ``fields`` parts of a multipart body, or the raw body itself.

    A body that is not multipart is taken as one image (``curl --data-binary @cat.jpg``).

    Args:
        body: the request body.
        content_type: its ``Content-Type`` header.
        fields: the form field names that carry images (``("file",)``).

    Returns:
        The file parts, in order (at least one).

    Raises:
        EmptyImageError: for an empty body.
        BadUploadError: for malformed multipart, or none of ``fields`` in it.
    """
    if not body:
        raise EmptyImageError("The request body is empty; send an image file.")
    if not is_multipart(content_type):
        return [Part(name=fields[0], filename=None, data=bytearray(body))]
    parts = [part for part in parse_multipart(body, content_type or "") if part.name in fields]
    if not parts:
        raise BadUploadError(
            f"No image in the form: send it as the field {' or '.join(map(repr, fields))}."
        )
    return parts
