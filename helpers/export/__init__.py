"""Export: a trained model in a form that runs without the training code, checked and labelled.

The deployment chapter's first half, in the order a model leaves training:

1. **Metadata.** :class:`ModelMeta` is what a model file alone does not say: the image size
   and the mean and std it was trained with, its class names, its name and a version.
   :func:`meta_from_trained` reads them from a checkpoint; :func:`save_meta` and
   :func:`load_meta` keep them in a JSON sidecar next to the export (``model.json``).
2. **Export.** :func:`export_torchscript` and :func:`export_onnx` (dynamic batch size),
   each followed by :func:`check_parity` against eager PyTorch; :func:`export_model` does
   both for a checkpoint and writes the sidecar.
3. **Quantisation.** :func:`quantize_dynamic_int8` stores linear layers' weights as int8;
   :func:`quantization_accuracy_cost` and :func:`state_dict_bytes` say what that costs
   and saves.
4. **Prediction.** :class:`Predictor` loads any of these forms (``backend="torch"`` or
   ``"onnx"``), preprocesses images exactly as in training (:func:`prepare_image`),
   decodes untrusted bytes safely (:func:`open_image` checks the header before
   :func:`load_image` decodes; :func:`decode_image` does both; refusals raise
   :class:`ImageRejected`),
   returns the top-k labels, and explains a prediction as a PNG overlay.
5. **Speed.** :func:`compare_runtimes` times the forms side by side (interleaved rounds).

Example:
    >>> paths = export_model("data/checkpoints/run/best.pt", "exports")  # doctest: +SKIP
    >>> predictor = Predictor.from_path(paths["onnx"], threads=1)  # doctest: +SKIP
    >>> predictor.predict(open("cat.jpg", "rb").read(), topk=3)  # doctest: +SKIP
    [[('cat', 0.88), ('dog', 0.07), ('deer', 0.02)]]
"""

from ._convert import (
    DEFAULT_ATOL,
    DEFAULT_OPSET,
    EXPORT_FORMATS,
    ParityError,
    check_parity,
    export_model,
    export_onnx,
    export_torchscript,
    load_torchscript,
    onnx_session,
)
from ._images import (
    ACCEPTED_FORMATS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_SIDE,
    CorruptImageError,
    EmptyImageError,
    ImageRejected,
    ImageTooLargeError,
    UnsupportedImageError,
    check_dimensions,
    decode_image,
    load_image,
    open_image,
    prepare_image,
)
from ._meta import SIDECAR_FORMAT, ModelMeta, load_meta, meta_from_trained, save_meta, sidecar_path
from ._predictor import BACKENDS, MODEL_SUFFIXES, ExplainUnavailableError, Predictor
from ._quantize import quantization_accuracy_cost, quantize_dynamic_int8, state_dict_bytes
from ._timing import compare_runtimes

__all__ = [
    "ACCEPTED_FORMATS",
    "BACKENDS",
    "DEFAULT_ATOL",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_SIDE",
    "DEFAULT_OPSET",
    "EXPORT_FORMATS",
    "MODEL_SUFFIXES",
    "SIDECAR_FORMAT",
    "CorruptImageError",
    "EmptyImageError",
    "ExplainUnavailableError",
    "ImageRejected",
    "ImageTooLargeError",
    "ModelMeta",
    "ParityError",
    "Predictor",
    "UnsupportedImageError",
    "check_dimensions",
    "check_parity",
    "compare_runtimes",
    "decode_image",
    "export_model",
    "export_onnx",
    "export_torchscript",
    "load_image",
    "load_meta",
    "load_torchscript",
    "meta_from_trained",
    "onnx_session",
    "open_image",
    "prepare_image",
    "quantization_accuracy_cost",
    "quantize_dynamic_int8",
    "save_meta",
    "sidecar_path",
    "state_dict_bytes",
]
