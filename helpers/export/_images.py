"""Turning untrusted bytes into a picture, and a picture into the model's input.

Uploads are hostile until proven otherwise. :func:`decode_image` reads the header first and
checks the format (by content, never by file name or declared type), the dimensions and the
pixel count *before* decoding a single pixel, so a decompression bomb (a few kilobytes of PNG
that decode to gigabytes) is refused cheaply; then it decodes and turns truncated or damaged
files into a clear error. Each refusal is an :class:`ImageRejected` that carries the HTTP
status a web app should answer with.

:func:`prepare_image` then applies exactly what the ETL step did to the training images
(EXIF orientation, RGB over white, shorter side resized and centre-cropped, bilinear), so a
photo is seen the way the training images were.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

# The ETL step's own decoding steps: a served image must look like the training images.
from helpers.data._decode import _fit, _to_rgb

# Formats we accept, by PIL's name for them, decided by content sniffing. Multi-picture JPEGs
# from cameras and phones (PIL calls them MPO) open through the JPEG reader and are accepted.
# GIF (animation), TIFF (many codecs, a large attack surface) and the rest are refused.
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP")
DEFAULT_MAX_PIXELS = 25_000_000  # width * height; a 24-megapixel camera photo still passes
DEFAULT_MAX_SIDE = 12_000  # pixels on either side; refuses strips such as 1 x 100,000
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError)


class ImageRejected(ValueError):
    """An input that is not an image we can classify; ``status_code`` is the HTTP answer."""

    status_code = 400


class EmptyImageError(ImageRejected):
    """No bytes at all."""

    status_code = 400


class CorruptImageError(ImageRejected):
    """An image that cannot be decoded: truncated, damaged, or without pixels."""

    status_code = 400


class UnsupportedImageError(ImageRejected):
    """Not an image, or an image format that is not accepted."""

    status_code = 415


class ImageTooLargeError(ImageRejected):
    """Too many bytes, too many pixels (a decompression bomb) or an absurd side."""

    status_code = 413


def _sniff_format(data: bytes) -> str | None:
    """The format PIL recognises in ``data`` (header only, nothing decoded), or ``None``."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format
    except Exception:  # any failure means the same: not an image PIL knows
        return None


def _open(data: bytes, formats: Sequence[str]) -> Image.Image:
    """Open ``data`` lazily (header only) with the ``formats`` plugins only."""
    try:
        return Image.open(io.BytesIO(data), formats=list(formats))
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(f"The image has too many pixels to decode safely: {err}") from err
    except UnidentifiedImageError:
        found = _sniff_format(data)
        accepted = ", ".join(formats)
        if found is not None:
            raise UnsupportedImageError(
                f"{found} images are not accepted; send one of {accepted}."
            ) from None
        raise UnsupportedImageError(
            f"The upload is not an image in a format we read ({accepted})."
        ) from None
    except _DECODE_ERRORS as err:
        raise CorruptImageError(f"The image header cannot be read: {err}") from err


def check_dimensions(
    width: int,
    height: int,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
) -> None:
    """Refuse sizes that are empty, absurdly long or too many pixels, before decoding.

    Args:
        width: in pixels, as the image header says.
        height: in pixels.
        max_pixels: the most ``width * height`` allowed.
        max_side: the most pixels allowed on either side.

    Raises:
        CorruptImageError: for a side of 0 pixels.
        ImageTooLargeError: for a side over ``max_side`` or more than ``max_pixels`` pixels.

    >>> check_dimensions(640, 480)
    >>> check_dimensions(1, 100_000)  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ImageTooLargeError: The image is 1 x 100000 pixels; each side may have at most 12000.
    """
    if width < 1 or height < 1:
        raise CorruptImageError(f"The image is {width} x {height} pixels: it has no pixels.")
    if max(width, height) > max_side:
        raise ImageTooLargeError(
            f"The image is {width} x {height} pixels; each side may have at most {max_side}."
        )
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"The image is {width} x {height} = {width * height:,} pixels; at most "
            f"{max_pixels:,} are accepted (decompression-bomb protection)."
        )


def open_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    formats: Sequence[str] = ACCEPTED_FORMATS,
) -> Image.Image:
    """Read and check an untrusted image's header; decode no pixels yet.

    The format is judged by content (PIL's readers), never by a file name or declared
    type. Nothing is written to disk and no path is opened: the bytes are read from memory.

    Args:
        data: the encoded image (the body of an upload).
        max_pixels: the most ``width * height`` accepted.
        max_side: the most pixels accepted on either side.
        formats: PIL format names accepted (see :data:`ACCEPTED_FORMATS`).

    Returns:
        The lazily opened image: ``size`` and ``format`` are known, the pixels are not.

    Raises:
        EmptyImageError: for no bytes.
        UnsupportedImageError: for bytes that are not an image, or a format not accepted.
        ImageTooLargeError: for too many pixels or too long a side (see
            :func:`check_dimensions`).
        CorruptImageError: for a header that cannot be read, or an image without pixels.
    """
    if not data:
        raise EmptyImageError("The upload is empty; send an image file.")
    img = _open(bytes(data), formats)
    check_dimensions(*img.size, max_pixels=max_pixels, max_side=max_side)
    return img


def load_image(img: Image.Image, *, image_size: int | None = None) -> Image.Image:
    """Decode the pixels of an image from :func:`open_image`, upright by its EXIF orientation.

    Args:
        img: a lazily opened image whose header was checked.
        image_size: the model's input size; a larger JPEG is then decoded at a reduced
            scale (libjpeg's draft mode, as the ETL step does), which is faster and smaller.

    Returns:
        The decoded image (possibly smaller than its header said, for a drafted JPEG).

    Raises:
        CorruptImageError: for a truncated or damaged file.
        ImageTooLargeError: when PIL's own decompression-bomb check trips.
    """
    try:
        if image_size is not None and img.format == "JPEG" and min(img.size) > image_size:
            img.draft(None, (image_size, image_size))  # as the ETL step does
        img.load()
        if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation: turn photos upright
            img = ImageOps.exif_transpose(img)
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(f"The image has too many pixels to decode safely: {err}") from err
    except _DECODE_ERRORS as err:
        raise CorruptImageError(
            f"The {img.format} image cannot be decoded: it is truncated or damaged ({err})."
        ) from err
    return img


def decode_image(
    data: bytes,
    *,
    image_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int = DEFAULT_MAX_SIDE,
    formats: Sequence[str] = ACCEPTED_FORMATS,
) -> Image.Image:
    """Decode untrusted image bytes safely: :func:`open_image`, then :func:`load_image`.

    Args:
        data: the encoded image (the body of an upload).
        image_size: the model's input size (see :func:`load_image`).
        max_pixels: the most ``width * height`` accepted.
        max_side: the most pixels accepted on either side.
        formats: PIL format names accepted (see :data:`ACCEPTED_FORMATS`).

    Returns:
        The decoded PIL image.

    Raises:
        ImageRejected: as :func:`open_image` and :func:`load_image` say (empty, not an
            accepted image, too large, truncated or damaged), with an HTTP ``status_code``.
    """
    img = open_image(data, max_pixels=max_pixels, max_side=max_side, formats=formats)
    return load_image(img, image_size=image_size)


def prepare_image(img: Image.Image, image_size: int) -> Image.Image:
    """An RGB ``image_size`` square, made as the ETL step made the training images.

    The image is turned upright by its EXIF orientation, transparent pixels are composited
    over white, 16-bit and float images scaled to 8 bits, then the shorter side is resized
    to ``image_size`` and the centre square cropped (bilinear). An image of the right size
    passes through unchanged.

    Args:
        img: any PIL image.
        image_size: the model's input side, in pixels.

    Returns:
        An RGB image of ``image_size x image_size`` pixels.

    Raises:
        CorruptImageError: for an image without pixels.

    >>> prepare_image(Image.new("RGBA", (64, 48)), 32).size
    (32, 32)
    """
    if img.width < 1 or img.height < 1:
        raise CorruptImageError(f"The image is {img.width} x {img.height} pixels: no pixels.")
    if img.getexif().get(0x0112, 1) != 1:  # upright, as the ETL step does (idempotent)
        img = ImageOps.exif_transpose(img)
    return _fit(_to_rgb(img), image_size)
