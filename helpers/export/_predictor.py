"""A :class:`Predictor`: images in, labels and probabilities out, from any saved form of a model.

One object hides which runtime does the arithmetic. It loads a :mod:`helpers.train`
checkpoint (eager PyTorch), a TorchScript file or an ONNX file (ONNX Runtime), applies
exactly the preprocessing the model was trained with (from the checkpoint, or from the
export's sidecar), runs batches, and returns the top-k classes. For the eager model it can
also explain a prediction (Grad-CAM, or attention rollout for a ViT) as a PNG overlay.
"""

from __future__ import annotations

import dataclasses
import io
import os
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from helpers.explain import explain as explain_maps
from helpers.explain import overlay
from helpers.train import load_trained
from helpers.transforms import build_transforms

from ._convert import _run_session, load_torchscript, onnx_session
from ._images import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SIDE, decode_image, prepare_image
from ._meta import ModelMeta, load_meta, meta_from_trained

BACKENDS = ("auto", "torch", "onnx")
# What a file is, by its suffix: a helpers.train checkpoint, TorchScript, or ONNX.
MODEL_SUFFIXES = {
    ".pt": "checkpoint",
    ".pth": "checkpoint",
    ".ckpt": "checkpoint",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
    ".onnx": "onnx",
}

ImageInput = Image.Image | bytes
Runner = Callable[[Tensor], np.ndarray]  # a (B, C, H, W) float batch -> (B, K) logits


class ExplainUnavailableError(RuntimeError):
    """The predictor has no eager model to explain with (an export without its checkpoint)."""


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(B, K)`` logits, computed stably in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=1, keepdims=True)


def _torch_runner(model: nn.Module, device: torch.device, lock: threading.Lock) -> Runner:
    """Run a PyTorch module (eager or TorchScript); one call at a time (hooks share it)."""

    def run(images: Tensor) -> np.ndarray:
        with lock, torch.inference_mode():
            return model(images.to(device)).float().cpu().numpy()  # (B, K)

    return run


def _file_kind(path: Path, backend: str) -> str:
    """``"checkpoint"``, ``"torchscript"`` or ``"onnx"``; ``ValueError`` for a bad pairing."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    kind = MODEL_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(
            f"Cannot tell what {path} is from its suffix; use one of "
            f"{', '.join(MODEL_SUFFIXES)} (checkpoint, TorchScript or ONNX)."
        )
    if backend == "onnx" and kind != "onnx":
        raise ValueError(
            f"backend='onnx' needs an .onnx file, got {path}; export one with "
            "helpers.export.export_model, or use backend='torch'."
        )
    if backend == "torch" and kind == "onnx":
        raise ValueError(f"{path} is ONNX: use backend='onnx' (or 'auto'), or pass a checkpoint.")
    return kind


def _set_torch_threads(threads: int | None) -> None:
    """``torch.set_num_threads`` (process-wide) when a count is given."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}.")
    torch.set_num_threads(threads)


class Predictor:
    """Classify images with a trained model, whichever runtime runs it.

    Build one with :meth:`from_path` (a checkpoint, TorchScript or ONNX file) or
    :meth:`from_model` (a network in memory). Inputs are PIL images or encoded image bytes;
    bytes are decoded safely (:func:`helpers.export.decode_image`). Every image goes through
    the training data's preprocessing: EXIF orientation, RGB, shorter side resized and
    centre-cropped to the trained size (:func:`helpers.export.prepare_image`), then the eval
    pipeline of :func:`helpers.transforms.build_transforms` with the stored mean and std.
    Calls are thread-safe.

    Args:
        run: maps a ``(B, C, H, W)`` float batch to ``(B, K)`` NumPy logits.
        meta: the model's preprocessing and labels.
        backend: ``"torch"``, ``"torchscript"`` or ``"onnx"``: what ``run`` uses (for display).
        explain_model: an eager network for :meth:`explain` (``None``: load ``checkpoint``
            on first use).
        checkpoint: the :mod:`helpers.train` checkpoint to explain with.
        device: where the eager models run.
        batch_size: the most images per forward pass.
        max_pixels: the most pixels an encoded input may decode to.
        max_side: the most pixels on either side of an encoded input.
        lock: held while ``run`` or an explanation uses a PyTorch model (hooks are shared).

    Raises:
        ValueError: for a batch size below 1, or a model whose outputs do not match
            ``meta.class_names``.

    >>> predictor = Predictor.from_path("exports/model.onnx")  # doctest: +SKIP
    >>> predictor.predict([Image.open("cat.jpg")], topk=2)  # doctest: +SKIP
    [[('cat', 0.91), ('dog', 0.05)]]
    """

    def __init__(
        self,
        run: Runner,
        meta: ModelMeta,
        *,
        backend: str,
        explain_model: nn.Module | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        device: torch.device | str = "cpu",
        batch_size: int = 64,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_side: int = DEFAULT_MAX_SIDE,
        lock: threading.Lock | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.meta = meta
        self.backend = backend
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.max_side = max_side
        self._run = run
        self._explain_model = explain_model
        self._checkpoint = Path(checkpoint) if checkpoint is not None else None
        self._lock = lock or threading.Lock()  # explanations hook the eager model
        self._transform = build_transforms(
            False, image_size=meta.image_size, mean=meta.mean, std=meta.std
        )
        self._check_outputs()

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        meta: ModelMeta,
        *,
        device: torch.device | str = "cpu",
        **options: Any,
    ) -> Predictor:
        """A predictor running ``model`` in eager PyTorch (which can also explain).

        Args:
            model: the trained network; moved to ``device`` and put in eval mode.
            meta: its preprocessing and labels (:func:`helpers.export.meta_from_trained`).
            device: where to run it.
            **options: ``batch_size``, ``max_pixels``, ``max_side`` (see the class).

        Returns:
            The :class:`Predictor`, backend ``"torch"``.
        """
        device, lock = torch.device(device), threading.Lock()
        model = model.to(device).eval()
        run = _torch_runner(model, device, lock)
        return cls(
            run, meta, backend="torch", explain_model=model, device=device, lock=lock, **options
        )

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        backend: str = "auto",
        *,
        threads: int | None = None,
        device: torch.device | str = "cpu",
        checkpoint: str | os.PathLike[str] | None = None,
        version: str | None = None,
        **options: Any,
    ) -> Predictor:
        """Load a checkpoint (``.pt``), a TorchScript (``.ts``) or an ONNX (``.onnx``) file.

        A checkpoint carries its own preprocessing (:func:`helpers.export.meta_from_trained`);
        an exported file needs its sidecar (``model.json``, see :func:`export_model`). Load
        only model files you trust: checkpoints are read with ``weights_only=True``, but a
        TorchScript file holds code that runs.

        Args:
            path: the model file; its suffix says what it is (:data:`MODEL_SUFFIXES`).
            backend: ``"auto"`` (by the suffix), ``"torch"`` (checkpoints and TorchScript)
                or ``"onnx"`` (ONNX files, in ONNX Runtime).
            threads: ONNX Runtime's intra-op threads for this session; for the PyTorch
                backends ``torch.set_num_threads`` (process-wide). ``None``: the default.
            device: where PyTorch models run (ONNX Runtime runs on the CPU).
            checkpoint: for an export, the checkpoint to explain with; ``None`` takes the
                one its sidecar names, when that file exists.
            version: overrides the model version of the sidecar or checkpoint.
            **options: ``batch_size``, ``max_pixels``, ``max_side`` (see the class).

        Returns:
            The :class:`Predictor`.

        Raises:
            FileNotFoundError: for a missing model file or sidecar.
            ValueError: for an unknown suffix or backend, a backend the file cannot run on,
                a bad thread count, an unreadable file, or outputs that do not match the
                class names.
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"Model file {file} does not exist.")
        kind = _file_kind(file, backend)
        if kind == "checkpoint":
            _set_torch_threads(threads)
            trained = load_trained(file, device=device)
            meta = meta_from_trained(trained, version=version)
            return cls.from_model(trained.model, meta, device=device, **options)
        meta = load_meta(file)
        meta = dataclasses.replace(meta, version=version) if version else meta
        explain_from = checkpoint if checkpoint is not None else meta.checkpoint
        options = {"checkpoint": explain_from, "device": device, **options}
        if kind == "onnx":
            run = partial(_run_session, onnx_session(file, threads=threads))
            return cls(run, meta, backend="onnx", **options)
        _set_torch_threads(threads)
        lock = threading.Lock()
        run = _torch_runner(load_torchscript(file), torch.device("cpu"), lock)
        return cls(run, meta, backend="torchscript", lock=lock, **options)

    def _check_outputs(self) -> None:
        """``ValueError`` unless the model gives one logit per class name."""
        size = self.meta.image_size
        logits = self._run(torch.zeros(1, self.meta.in_chans, size, size))  # (1, K)
        if logits.shape != (1, self.meta.num_classes):
            raise ValueError(
                f"The model gives outputs of shape {logits.shape[1:]}, but its metadata names "
                f"{self.meta.num_classes} classes: the sidecar belongs to another model."
            )

    # -- properties ----------------------------------------------------------------------------

    @property
    def class_names(self) -> tuple[str, ...]:
        """The name of each class, in logit order."""
        return self.meta.class_names

    @property
    def version(self) -> str:
        """The model version (from the sidecar or checkpoint)."""
        return self.meta.version

    @property
    def can_explain(self) -> bool:
        """Whether :meth:`explain` has an eager model (or its checkpoint) to work with."""
        return self._explain_model is not None or (
            self._checkpoint is not None and self._checkpoint.is_file()
        )

    # -- predicting ----------------------------------------------------------------------------

    def decode(self, data: bytes) -> Image.Image:
        """Decode untrusted bytes with this predictor's limits (see :func:`decode_image`)."""
        return decode_image(
            data,
            image_size=self.meta.image_size,
            max_pixels=self.max_pixels,
            max_side=self.max_side,
        )

    def load_images(self, images: ImageInput | Sequence[ImageInput]) -> list[Image.Image]:
        """PIL images from one image, bytes, or a sequence of them (bytes decoded safely).

        Raises:
            TypeError: for anything but PIL images and bytes.
            helpers.export.ImageRejected: for bytes that are not an acceptable image.
        """
        items = [images] if isinstance(images, Image.Image | bytes | bytearray) else images
        loaded = []
        for item in items:
            if isinstance(item, bytes | bytearray):
                item = self.decode(bytes(item))
            if not isinstance(item, Image.Image):
                raise TypeError(f"Expected PIL images or bytes, got {type(item).__name__}.")
            loaded.append(item)
        return loaded

    def preprocess(self, images: ImageInput | Sequence[ImageInput]) -> Tensor:
        """The model's input batch: ``(B, C, H, W)`` float32, normalised, on the CPU."""
        pictures = [prepare_image(img, self.meta.image_size) for img in self.load_images(images)]
        if not pictures:
            raise ValueError("No images given.")
        return torch.stack([self._transform(picture) for picture in pictures])  # (B, C, H, W)

    def logits(self, batch: Tensor) -> np.ndarray:
        """The model's raw outputs for a preprocessed batch, ``(B, C, H, W)`` -> ``(B, K)``.

        What the runtime alone costs, without decoding and preprocessing: the timing
        comparisons of :func:`helpers.export.compare_runtimes` call this.
        """
        chunks = [self._run(chunk) for chunk in batch.split(self.batch_size)]  # [(b, K)]
        return np.concatenate(chunks)

    def probabilities(self, images: ImageInput | Sequence[ImageInput]) -> np.ndarray:
        """Class probabilities, ``(B, K)`` float64 rows that sum to 1, in batches."""
        return _softmax(self.logits(self.preprocess(images)))  # (B, K)

    def predict(
        self, images: ImageInput | Sequence[ImageInput], topk: int = 5
    ) -> list[list[tuple[str, float]]]:
        """The ``topk`` most likely classes of each image, most likely first.

        Args:
            images: a PIL image, encoded bytes, or a sequence of them.
            topk: how many classes per image (at most the number of classes).

        Returns:
            Per image, ``(label, probability)`` pairs.

        Raises:
            ValueError: for ``topk`` below 1 or no images.
            helpers.export.ImageRejected: for bytes that are not an acceptable image.
        """
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk must be a positive integer, got {topk!r}.")
        probs = self.probabilities(images)  # (B, K)
        order = np.argsort(-probs, axis=1, kind="stable")[:, :topk]  # (B, topk)
        return [
            [(self.class_names[k], float(row[k])) for k in ranks]
            for row, ranks in zip(probs, order, strict=True)
        ]

    # -- explaining ----------------------------------------------------------------------------

    def _eager_model(self) -> nn.Module:
        """The eager model to explain with, loading the checkpoint on first use."""
        if self._explain_model is not None:
            return self._explain_model
        if self._checkpoint is None or not self._checkpoint.is_file():
            where = f" ({self._checkpoint} does not exist)" if self._checkpoint else ""
            raise ExplainUnavailableError(
                f"This predictor runs a {self.backend} export, which Grad-CAM and attention "
                f"rollout cannot look inside, and has no checkpoint to explain with{where}. "
                "Pass checkpoint= (the helpers.train checkpoint it was exported from)."
            )
        trained = load_trained(self._checkpoint, device=self.device)
        if trained.config.model.num_classes != self.meta.num_classes:
            raise ValueError(f"{self._checkpoint} is not the checkpoint of this export.")
        self._explain_model = trained.model
        return trained.model

    def explain(self, image: ImageInput, *, size: int | None = 224, alpha: float = 0.5) -> bytes:
        """A PNG of the image as the model saw it, with the explanation's heat map over it.

        Grad-CAM for the predicted class of a CNN, attention rollout for a ViT
        (:func:`helpers.explain.explain`), laid over the preprocessed image
        (:func:`helpers.explain.overlay`) and enlarged without smoothing, so each of the
        model's input pixels stays visible.

        Args:
            image: one PIL image or encoded image bytes.
            size: the PNG's side in pixels; ``None`` keeps the model's input size.
            alpha: the heat map's weight, in [0, 1].

        Returns:
            The PNG file's bytes.

        Raises:
            ExplainUnavailableError: for an export without an eager model or checkpoint.
            helpers.export.ImageRejected: for bytes that are not an acceptable image.
        """
        batch = self.preprocess([image])  # (1, C, H, W)
        with self._lock:
            model = self._eager_model()
            heat = explain_maps(model, batch.to(self.device))  # (1, H, W)
        blended = overlay(batch[0], heat[0].cpu(), self.meta.mean, self.meta.std, alpha=alpha)
        picture = Image.fromarray(np.rint(blended * 255).astype(np.uint8))  # (H, W, 3)
        if size is not None:
            picture = picture.resize((size, size), Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        return buffer.getvalue()

    def __repr__(self) -> str:
        return (
            f"Predictor({self.meta.model_name!r}, backend={self.backend!r}, "
            f"version={self.version!r}, classes={self.meta.num_classes}, "
            f"image_size={self.meta.image_size})"
        )
