"""The export stage (helpers.export): TorchScript and ONNX checked against eager PyTorch,
int8 quantisation, the metadata sidecar, safe decoding and the Predictor on every backend."""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import data as hd
from helpers import export as ex
from helpers import models as hm
from helpers import train as ht
from helpers.__main__ import main
from helpers.transforms import build_transforms
from tests.serve_fixtures import (
    IMAGE_SIZE,
    encode,
    noise_image,
    png_header_only,
    synthetic_pictures,
    train_tiny_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_checkpoint(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return ex.export_model(checkpoint, tmp_path_factory.mktemp("exports"), version="test-1")


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return hm.create_model(name, num_classes=10).eval()


def _batch(size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(
        size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed)
    )


# ---------------------------------------------------------------------------------------------
# Export and parity
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["simple_cnn", "resnet9_narrow"])
def test_torchscript_matches_eager_at_another_batch_size(tmp_path, name) -> None:
    model = _model(name)
    path = ex.export_torchscript(model, tmp_path / "m.ts", torch.zeros(1, 3, 32, 32))
    scripted = ex.load_torchscript(path)
    batch = _batch(3)  # exported at batch 1, run at batch 3
    with torch.inference_mode():
        assert scripted(batch).shape == (3, 10)
    assert ex.check_parity(model, scripted, batch) < 1e-4
    assert not model.training  # the caller's model is left as it was


@pytest.mark.parametrize("name", ["simple_cnn", "resnet9_narrow"])
def test_onnx_matches_eager_with_a_dynamic_batch(tmp_path, name) -> None:
    model = _model(name)
    real = _batch(2, seed=5)
    path = ex.export_onnx(model, tmp_path / "m.onnx", image_size=IMAGE_SIZE, inputs=real)
    session = ex.onnx_session(path, threads=1)
    batch_dim = session.get_inputs()[0].shape[0]
    assert isinstance(batch_dim, str)  # symbolic: any batch size
    logits = session.run(None, {"images": _batch(3).numpy()})[0]
    assert logits.shape == (3, 10)
    with torch.inference_mode():
        assert np.abs(logits - model(_batch(3)).numpy()).max() < 1e-4
    assert ex.check_parity(model, session, [_batch(3), real]) < 1e-4


def test_parity_check_fails_loudly_when_outputs_differ() -> None:
    model = _model("simple_cnn")
    with pytest.raises(ex.ParityError, match=r"differ from eager PyTorch by up to 0\.5"):
        ex.check_parity(model, lambda images: model(images) + 0.5, _batch(2))
    with pytest.raises(ex.ParityError, match="shape"):
        ex.check_parity(model, lambda images: model(images)[:, :3], _batch(2))
    with pytest.raises(ValueError, match="example must be"):
        ex.export_torchscript(model, "unused.ts", torch.zeros(3, 32, 32))


def test_int8_quantisation_swaps_linear_layers_only_and_stays_close() -> None:
    model = _model("simple_cnn")
    quantized = ex.quantize_dynamic_int8(model)
    kinds = {name: module._get_name() for name, module in quantized.named_modules()}
    assert kinds["fc1"] == kinds["fc2"] == "DynamicQuantizedLinear"
    assert kinds["features.conv1"] == "Conv2d"  # convolutions are unaffected
    assert isinstance(model.fc1, nn.Linear)  # the original is untouched
    batch = _batch(8)
    with torch.inference_mode():
        reference, approx = model(batch), quantized(batch)
    assert (approx - reference).abs().max() < 0.05 * reference.abs().max()
    assert ex.state_dict_bytes(quantized) < 0.5 * ex.state_dict_bytes(model)  # fc1 dominates


def test_quantisation_accuracy_cost_compares_on_the_same_images() -> None:
    model = _model("simple_cnn")
    generator = torch.Generator().manual_seed(0)
    loader = [
        (_batch(16, seed=i), torch.randint(0, 10, (16,), generator=generator)) for i in range(2)
    ]
    cost = ex.quantization_accuracy_cost(model, ex.quantize_dynamic_int8(model), loader)
    assert cost["images"] == 32 and cost["agreement"] >= 0.9
    assert cost["drop"] == pytest.approx(cost["acc_float"] - cost["acc_int8"])
    with pytest.raises(ValueError, match="no batches"):
        ex.quantization_accuracy_cost(model, model, [])


# ---------------------------------------------------------------------------------------------
# Metadata: checkpoint -> sidecar
# ---------------------------------------------------------------------------------------------


def test_checkpoint_records_the_loader_statistics_and_meta_uses_them(checkpoint) -> None:
    trained = ht.load_trained(checkpoint)
    assert trained.mean is not None and len(trained.mean) == 3
    meta = ex.meta_from_trained(trained, version="v7")
    assert meta.stats_source == "checkpoint" and meta.mean == trained.mean
    assert meta.image_size == IMAGE_SIZE and meta.model_name == "simple_cnn"
    assert meta.class_names == hd.CIFAR10_CLASSES and meta.version == "v7"
    assert Path(meta.checkpoint) == checkpoint.resolve()
    assert ex.meta_from_trained(trained).version.startswith("simple_cnn-epoch1-")


def test_old_checkpoints_fall_back_to_cifar_constants_or_ask(checkpoint) -> None:
    old = dataclasses.replace(ht.load_trained(checkpoint), mean=None, std=None)
    meta = ex.meta_from_trained(old)
    assert meta.mean == hd.CIFAR10_MEAN and meta.stats_source == "cifar10-constants"
    elsewhere = dataclasses.replace(
        old,
        config=dataclasses.replace(
            old.config, data=dataclasses.replace(old.config.data, source="/my/photos")
        ),
    )
    with pytest.raises(ValueError, match="Pass mean= and std="):
        ex.meta_from_trained(elsewhere)
    given = ex.meta_from_trained(elsewhere, mean=(0.5,) * 3, std=(0.2,) * 3)
    assert given.stats_source == "given" and given.std == (0.2, 0.2, 0.2)


def test_sidecar_round_trip_and_bad_sidecars(tmp_path) -> None:
    meta = ex.ModelMeta("resnet9_narrow", ("a", "b"), 32, (0.4, 0.5, 0.6), (0.2, 0.2, 0.2), "v1")
    written = ex.save_meta(meta, tmp_path / "model.onnx")
    assert written == tmp_path / "model.json" == ex.sidecar_path(tmp_path / "model.ts")
    assert ex.load_meta(tmp_path / "model.onnx") == meta
    assert json.loads(written.read_text())["class_names"] == ["a", "b"]
    with pytest.raises(FileNotFoundError, match="sidecar"):
        ex.load_meta(tmp_path / "other.onnx")
    written.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ex.load_meta(written)
    written.write_text(json.dumps({**meta.to_dict(), "format": 99}))
    with pytest.raises(ValueError, match="format 99"):
        ex.load_meta(written)
    written.write_text(json.dumps({**meta.to_dict(), "colour": "blue"}))
    with pytest.raises(ValueError, match="Unknown model metadata keys"):
        ex.load_meta(written)
    with pytest.raises(ValueError, match="std must be positive"):
        ex.ModelMeta("m", ("a",), 32, (0.5,), (0.0,), "v1")


# ---------------------------------------------------------------------------------------------
# Decoding untrusted bytes
# ---------------------------------------------------------------------------------------------


def test_decode_image_accepts_the_listed_formats_by_content() -> None:
    picture = noise_image(40, 30)
    for fmt in ("PNG", "JPEG", "WEBP", "BMP"):
        decoded = ex.decode_image(encode(picture, fmt))
        assert decoded.size == (40, 30) and decoded.format == fmt


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        (b"", ex.EmptyImageError, "empty"),
        (b"hello, not an image at all", ex.UnsupportedImageError, "not an image"),
        (encode(noise_image(8, 8), "GIF"), ex.UnsupportedImageError, "GIF images are not accepted"),
        (encode(noise_image(8, 8), "TIFF"), ex.UnsupportedImageError, "TIFF"),
        (encode(noise_image(64, 64))[:300], ex.CorruptImageError, "truncated"),
        (png_header_only(6000, 6000), ex.ImageTooLargeError, "decompression-bomb"),
        (png_header_only(100_000, 100_000), ex.ImageTooLargeError, "too many pixels"),
        (png_header_only(1, 100_000), ex.ImageTooLargeError, "each side may have at most"),
    ],
)
def test_decode_image_refuses_hostile_bytes_with_a_status(payload, error, message) -> None:
    with pytest.raises(error, match=message) as caught:
        ex.decode_image(payload)
    assert 400 <= caught.value.status_code < 500


def test_prepare_image_matches_the_training_preprocessing() -> None:
    rgba = Image.new("RGBA", (64, 48), (255, 0, 0, 0))  # fully transparent: white
    assert ex.prepare_image(rgba, 32).getpixel((0, 0)) == (255, 255, 255)
    picture = synthetic_pictures(1)[0]
    assert ex.prepare_image(picture, 32) is picture  # already the trained size: unchanged


# ---------------------------------------------------------------------------------------------
# Predictor
# ---------------------------------------------------------------------------------------------


def test_predictor_backends_agree_on_the_same_images(checkpoint, exported) -> None:
    pictures = [*synthetic_pictures(3), noise_image(80, 50)]
    uploads = [encode(pictures[0], "JPEG", quality=95), encode(pictures[3], "PNG")]
    answers = {}
    for path in (checkpoint, exported["onnx"], exported["torchscript"]):
        predictor = ex.Predictor.from_path(path, threads=1)
        answers[predictor.backend] = predictor.probabilities(pictures)
        top = predictor.predict(uploads, topk=3)
        assert len(top) == 2 and all(len(row) == 3 for row in top)
        assert top[0][0][1] >= top[0][1][1] >= top[0][2][1]
    assert set(answers) == {"torch", "onnx", "torchscript"}
    for probs in answers.values():
        assert probs.shape == (4, 10) and np.allclose(probs.sum(axis=1), 1)
        assert (probs.argmax(1) == answers["torch"].argmax(1)).all()
        assert np.abs(probs - answers["torch"]).max() < 1e-4


def test_predictor_preprocessing_is_the_eval_pipeline(checkpoint) -> None:
    predictor = ex.Predictor.from_path(checkpoint)
    meta = predictor.meta
    pictures = synthetic_pictures(2)
    eval_tf = build_transforms(False, image_size=meta.image_size, mean=meta.mean, std=meta.std)
    expected = torch.stack(
        [eval_tf(torch.from_numpy(np.array(p)).permute(2, 0, 1)) for p in pictures]
    )
    assert torch.allclose(predictor.preprocess(pictures), expected, atol=1e-6)
    top = predictor.predict(pictures[0], topk=50)  # one image; topk capped at the classes
    assert len(top) == 1 and len(top[0]) == 10
    assert {label for label, _ in top[0]} == set(hd.CIFAR10_CLASSES)
    with pytest.raises(ValueError, match="topk"):
        predictor.predict(pictures, topk=0)
    with pytest.raises(TypeError, match="PIL images or bytes"):
        predictor.predict(["cat.jpg"])


def test_explain_gives_a_png_and_exports_need_their_checkpoint(checkpoint, exported) -> None:
    image = encode(synthetic_pictures(1)[0])
    png = ex.Predictor.from_path(checkpoint).explain(image, size=64)
    overlay = Image.open(io.BytesIO(png))
    assert png.startswith(b"\x89PNG") and overlay.size == (64, 64) and overlay.mode == "RGB"
    onnx = ex.Predictor.from_path(exported["onnx"])
    assert onnx.can_explain  # the sidecar names the checkpoint, which exists
    assert onnx.explain(image).startswith(b"\x89PNG")
    alone = ex.Predictor.from_path(exported["onnx"], checkpoint=Path("/nowhere/best.pt"))
    assert not alone.can_explain
    with pytest.raises(ex.ExplainUnavailableError, match="Pass checkpoint="):
        alone.explain(image)


def test_predictor_refuses_bad_files_and_pairings(tmp_path, exported, checkpoint) -> None:
    with pytest.raises(FileNotFoundError):
        ex.Predictor.from_path(tmp_path / "missing.onnx")
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="suffix"):
        ex.Predictor.from_path(tmp_path / "model.bin")
    with pytest.raises(ValueError, match=r"backend='onnx' needs an \.onnx file"):
        ex.Predictor.from_path(checkpoint, backend="onnx")
    with pytest.raises(ValueError, match="use backend='onnx'"):
        ex.Predictor.from_path(exported["onnx"], backend="torch")
    with pytest.raises(ValueError, match="Unknown backend"):
        ex.Predictor.from_path(exported["onnx"], backend="tensorrt")
    alone = tmp_path / "alone.onnx"
    alone.write_bytes(exported["onnx"].read_bytes())
    with pytest.raises(FileNotFoundError, match="sidecar"):
        ex.Predictor.from_path(alone)
    meta = ex.load_meta(exported["onnx"])
    ex.save_meta(dataclasses.replace(meta, class_names=("a", "b")), alone)
    with pytest.raises(ValueError, match="belongs to another model"):
        ex.Predictor.from_path(alone)


def test_cli_exports_a_checkpoint(tmp_path, checkpoint, capsys) -> None:
    out = tmp_path / "cli"
    args = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--format", "torchscript"]
    assert main([*args, "--version", "cli-1"]) == 0
    assert (out / "model.ts").is_file() and ex.load_meta(out / "model.ts").version == "cli-1"
    assert "model.ts" in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(tmp_path / "no.pt"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_logits_are_the_runtimes_raw_outputs_in_chunks(checkpoint, exported) -> None:
    onnx = ex.Predictor.from_path(exported["onnx"], threads=1, batch_size=4)
    eager = ex.Predictor.from_path(checkpoint)
    batch = _batch(10)  # three chunks of at most 4
    logits = onnx.logits(batch)
    assert logits.shape == (10, 10)
    with torch.inference_mode():
        expected = ht.load_trained(checkpoint).model(batch).numpy()
    assert np.allclose(logits, expected, atol=1e-4)
    assert np.allclose(eager.logits(batch), expected, atol=1e-6)
    probs = onnx.probabilities([Image.new("RGB", (32, 32), "red")])
    assert probs.shape == (1, 10) and np.isclose(probs.sum(), 1.0)


def test_compare_runtimes_times_every_runner_on_the_same_batches() -> None:
    seen: dict[str, list[tuple[int, ...]]] = {"fast": [], "slow": []}

    def runner(name: str, pause: float):
        def run(batch: torch.Tensor) -> None:
            seen[name].append(tuple(batch.shape))
            time.sleep(pause)

        return run

    table = ex.compare_runtimes(
        {"slow": runner("slow", 0.004), "fast": runner("fast", 0.001)},
        image_size=8,
        batch_sizes=(1, 4),
        rounds=2,
        calls=2,
    )
    assert list(table.index) == ["slow", "fast"]
    assert seen["fast"].count((4, 3, 8, 8)) == 1 + 2 * 2  # warm-up, then rounds x calls
    assert table.loc["slow", "batch 1: speed-up"] == 1.0  # the first runner is the baseline
    assert table.loc["fast", "batch 4: speed-up"] > 1.5
    assert table.loc["fast", "batch 4: images/s"] == pytest.approx(
        4e3 / table.loc["fast", "batch 4: ms"]
    )
    with pytest.raises(ValueError, match="positive"):
        ex.compare_runtimes({"x": runner("fast", 0)}, image_size=8, rounds=0)
