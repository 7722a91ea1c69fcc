"""The data stage (helpers.data): sources, the ETL cache, splits, statistics and loaders."""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import time
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import data as hd
from helpers.config import PROFILES, DataConfig, data_dir
from helpers.data import _decode
from helpers.transforms import BatchAugment, build_transforms
from tests.conftest import TORCH_DEVICE
from tests.data_fixtures import make_archive, write_cifar_folder, write_messy_folder

# CI points CIFAR10_PATH at the shared archive; remember it for the slow test, then hide it
# from every other test so that each one chooses its own source.
SHARED_CIFAR10 = os.environ.get("CIFAR10_PATH", "")


@pytest.fixture(autouse=True)
def _no_cifar10_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CIFAR10_PATH", raising=False)


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """The messy folder with its two corrupt files, without the empty class."""
    return write_messy_folder(tmp_path / "messy", empty_class=False)


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    """The messy folder without corrupt files or empty class: loads without warnings."""
    return write_messy_folder(tmp_path / "clean", corrupt=False, empty_class=False)


@pytest.fixture
def cifar(tmp_path: Path) -> tuple[Path, dict]:
    """A fake torchvision CIFAR-10 folder: (root holding cifar-10-batches-py, its arrays)."""
    root = tmp_path / "cifar"
    return root, write_cifar_folder(root)


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if torchvision's CIFAR10 download is reached."""

    def forbidden(*args, **kwargs):
        raise AssertionError("torchvision download must not be called here")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", forbidden)


def _load_quietly(source, **kwargs) -> hd.ImageData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hd.CorruptImageWarning)
        return hd.load_dataset(source, **kwargs)


def _all_images(data: hd.ImageData) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.cat([data.train_images, data.test_images]),
        torch.cat([data.train_labels, data.test_labels]),
    )


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count calls of the image decoder (a list holding one counter)."""
    calls = [0]
    original = _decode._decode_image

    def counting(data: bytes, image_size: int) -> np.ndarray:
        calls[0] += 1
        return original(data, image_size)

    monkeypatch.setattr(_decode, "_decode_image", counting)  # where _add_file looks it up
    return calls


def _image_data(train_labels, test_labels, image_size: int = 8, seed: int = 0) -> hd.ImageData:
    """Random images with the given labels."""
    gen = torch.Generator().manual_seed(seed)
    train_labels, test_labels = torch.as_tensor(train_labels), torch.as_tensor(test_labels)
    shape = (3, image_size, image_size)
    return hd.ImageData(
        train_images=torch.randint(0, 256, (len(train_labels), *shape), generator=gen).byte(),
        train_labels=train_labels,
        test_images=torch.randint(0, 256, (len(test_labels), *shape), generator=gen).byte(),
        test_labels=test_labels,
        class_names=tuple(f"c{i}" for i in range(int(train_labels.max()) + 1)),
        source="test",
        fingerprint="test",
    )


# ----------------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------------


def test_cifar10_constants() -> None:
    assert len(hd.CIFAR10_CLASSES) == 10 and hd.CIFAR10_CLASSES[0] == "airplane"
    assert hd.CIFAR10_MEAN == (0.4914, 0.4822, 0.4465)
    assert hd.CIFAR10_STD == (0.2470, 0.2435, 0.2616)


# ----------------------------------------------------------------------------------------------
# Sources and their resolution
# ----------------------------------------------------------------------------------------------


def test_describe_source_prefers_the_env_var(cifar, monkeypatch) -> None:
    root, _ = cifar
    monkeypatch.setenv("CIFAR10_PATH", str(root))
    facts = hd.describe_source("cifar10")
    assert facts["kind"] == "torchvision CIFAR-10 folder"
    assert facts["path"] == str(root / "cifar-10-batches-py")
    assert facts["origin"] == "$CIFAR10_PATH"
    assert facts["env var"] == "CIFAR10_PATH" and facts["env var set"] == f"yes ({root})"
    assert facts["status"] == "ok"


def test_describe_source_without_a_copy(monkeypatch) -> None:
    assert hd.describe_source("cifar10")["kind"] == "download (torchvision)"
    assert hd.describe_source("cifar10")["env var set"] == "no"
    assert hd.describe_source("cifar10", profile="smoke")["kind"].startswith("synthetic")
    missing = hd.describe_source("cifar10", download=False)
    assert missing["kind"] == "missing" and "not available" in missing["status"]


def test_describe_source_reports_a_bad_env_path_without_raising(monkeypatch) -> None:
    monkeypatch.setenv("CIFAR10_PATH", "/nowhere/cifar10.tar.gz")
    facts = hd.describe_source()
    assert facts["kind"] == "missing" and facts["path"] == "/nowhere/cifar10.tar.gz"
    assert "does not exist" in facts["status"]


def test_describe_source_of_paths(clean, cifar, tmp_path) -> None:
    assert hd.describe_source(clean)["kind"] == "ImageFolder directory"
    archive = make_archive(clean, tmp_path / "images.zip")
    assert hd.describe_source(str(archive))["kind"] == "archive (zip)"
    assert hd.describe_source(cifar[0] / "cifar-10-batches-py")["kind"].startswith("torchvision")


def test_env_var_pointing_nowhere_is_an_error_naming_it(monkeypatch) -> None:
    monkeypatch.setenv("CIFAR10_PATH", "/nowhere/at/all")
    with pytest.raises(FileNotFoundError, match="/nowhere/at/all"):
        hd.load_dataset("cifar10")


def test_missing_cifar10_says_both_ways_to_provide_it(no_download) -> None:
    with pytest.raises(FileNotFoundError) as err:
        hd.load_dataset("cifar10", download=False, profile="quick")
    assert "CIFAR10_PATH" in str(err.value) and "download" in str(err.value)


def test_failed_download_says_both_ways(monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", offline)
    with pytest.raises(FileNotFoundError) as err:
        hd.load_dataset("cifar10")
    message = str(err.value)
    assert "CIFAR10_PATH" in message and "download" in message and "no network" in message


def test_download_goes_through_torchvision(monkeypatch) -> None:
    calls = []

    def fake_download(root, train=True, download=False):  # writes what torchvision would
        calls.append((root, download))
        write_cifar_folder(Path(root))

    monkeypatch.setattr("torchvision.datasets.CIFAR10", fake_download)
    data = hd.load_dataset("cifar10")
    assert calls == [(str(data_dir()), True)]
    assert len(data.train_labels) == 30 and not data.synthetic
    assert hd.describe_source()["kind"] == "torchvision CIFAR-10 folder"  # now found locally


def test_copy_in_the_data_folder_is_used_before_download(no_download) -> None:
    expected = write_cifar_folder(data_dir())
    data = hd.load_dataset("cifar10")
    assert torch.equal(data.test_images, torch.from_numpy(expected["test"][0]))


def test_smoke_profile_without_data_uses_synthetic_data_and_says_so(no_download) -> None:
    with pytest.warns(hd.SyntheticDataWarning, match="SYNTHETIC") as record:
        data = hd.load_dataset("cifar10", profile="smoke")
    assert "CIFAR10_PATH" in str(record[0].message)  # and how to get the real data
    assert data.synthetic and "SYNTHETIC" in repr(data)
    assert data.train_images.shape[1:] == (3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.class_names == hd.CIFAR10_CLASSES


def test_smoke_profile_uses_real_data_when_present(cifar, monkeypatch) -> None:
    monkeypatch.setenv("CIFAR10_PATH", str(cifar[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = hd.load_dataset("cifar10", profile=PROFILES["smoke"])
    assert not data.synthetic


def test_other_profiles_never_fall_back_to_synthetic_data(no_download) -> None:
    for profile in ("quick", "full"):
        with pytest.raises(FileNotFoundError, match="CIFAR10_PATH"):
            hd.load_dataset("cifar10", profile=profile, download=False)


def test_synthetic_classes_are_learnable() -> None:
    data = hd.make_synthetic_data(20, 10, seed=3)
    train = data.train_images.float().flatten(1)
    centroids = torch.stack([train[data.train_labels == c].mean(0) for c in range(10)])
    test = data.test_images.float().flatten(1)
    predicted = torch.cdist(test, centroids).argmin(1)
    assert (predicted == data.test_labels).float().mean() > 0.8  # chance is 0.1


def test_missing_path_and_unsupported_file_are_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        hd.load_dataset(tmp_path / "does-not-exist")
    text = tmp_path / "images.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"images\.txt.*\.zip"):
        hd.load_dataset(text)


# ----------------------------------------------------------------------------------------------
# The torchvision CIFAR-10 format
# ----------------------------------------------------------------------------------------------


def test_torchvision_folder_reads_like_torchvision(cifar, monkeypatch) -> None:
    import torchvision.datasets.cifar as tv_cifar

    root, expected = cifar
    # torchvision checks the md5 of the real files; ours are small fakes in the same format.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    data = hd.load_dataset(root)
    for train, images, labels in (
        (True, data.train_images, data.train_labels),
        (False, data.test_images, data.test_labels),
    ):
        reference = tv_cifar.CIFAR10(str(root), train=train, download=False)
        assert np.array_equal(images.permute(0, 2, 3, 1).numpy(), reference.data)  # HWC
        assert labels.tolist() == reference.targets
        assert list(data.class_names) == reference.classes
    assert np.array_equal(data.train_images.numpy(), expected["train"][0])
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64


def test_cifar_root_batches_folder_and_archive_agree(cifar, tmp_path, monkeypatch) -> None:
    root, expected = cifar
    archive = make_archive(root, tmp_path / "cifar-10-python.tar.gz")
    monkeypatch.setenv("CIFAR10_PATH", str(archive))
    loads = [hd.load_dataset(root), hd.load_dataset(root / "cifar-10-batches-py")]
    loads.append(hd.load_dataset("cifar10"))
    for data in loads:
        assert np.array_equal(data.test_images.numpy(), expected["test"][0])
        assert data.test_labels.tolist() == expected["test"][1].tolist()


def test_cifar_pickles_cannot_run_code(cifar, tmp_path) -> None:
    root, _ = cifar
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({"data": Payload()}))
    with pytest.raises(ValueError, match="data_batch_3"):
        hd.load_dataset(root)
    assert not marker.exists()


def test_malformed_cifar_batch_is_named(cifar) -> None:
    root, _ = cifar
    batch = root / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    with pytest.raises(ValueError, match="test_batch"):
        hd.load_dataset(root)


def test_cifar_can_be_resized(cifar) -> None:
    data = hd.load_dataset(cifar[0], image_size=16)
    assert data.train_images.shape == (30, 3, 16, 16) and data.image_size == 16


# ----------------------------------------------------------------------------------------------
# ImageFolder directories: the messy cases
# ----------------------------------------------------------------------------------------------


def _one_corrupt_warning(source) -> tuple[hd.ImageData, str]:
    with pytest.warns(hd.CorruptImageWarning) as record:
        data = hd.load_dataset(source)
    corrupt = [w for w in record if issubclass(w.category, hd.CorruptImageWarning)]
    assert len(corrupt) == 1  # one warning for all skipped files, not one per file
    return data, str(corrupt[0].message)


def test_truncated_jpeg_is_skipped_and_named(messy) -> None:
    data, message = _one_corrupt_warning(messy)
    assert str(messy / "dog" / "truncated.jpg") in message
    assert any(path.endswith("truncated.jpg") for path in data.skipped)


def test_text_file_named_jpg_is_a_corrupt_image(messy) -> None:
    data, message = _one_corrupt_warning(messy)
    assert str(messy / "dog" / "not_an_image.jpg") in message and "2 unreadable" in message
    assert sorted(Path(p).name for p in data.skipped) == ["not_an_image.jpg", "truncated.jpg"]


def test_strict_mode_raises_naming_the_file(messy) -> None:
    with pytest.raises(ValueError, match=r"truncated\.jpg"):
        hd.load_dataset(messy, strict=True)


def test_strict_mode_raises_from_the_cache_too(messy) -> None:
    _load_quietly(messy)
    with pytest.raises(ValueError, match=r"not_an_image\.jpg"):
        hd.load_dataset(messy, strict=True)


def test_nested_folders_and_upper_case_extensions_belong_to_their_class(clean) -> None:
    data = hd.load_dataset(clean)
    _, labels = _all_images(data)
    assert data.class_names == ("cat", "dog")
    # cat: rgb.JPG, gray.PNG, cmyk.tif, sixteen.png, wide.png + 2 in nested folders
    assert torch.bincount(labels).tolist() == [7, 6]


def test_readme_hidden_files_and_other_extensions_are_ignored_silently(clean) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the hidden broken.jpg would warn if it were read
        data = hd.load_dataset(clean)
    assert data.skipped == ()


def test_every_mode_and_size_becomes_rgb_at_the_image_size(clean) -> None:
    data = hd.load_dataset(clean)
    images, labels = _all_images(data)
    assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.uint8
    seen = {
        (
            tuple(img[:, 0, 0].tolist()),
            tuple(img[:, 16, 16].tolist()),
            tuple(img[:, 16, 2].tolist()),
        )
        for img in images[labels == 0]
    }
    white, red, blue = (255, 255, 255), (255, 0, 0), (0, 0, 255)
    assert (red, red, red) in seen  # CMYK (0, 255, 255, 0)
    assert ((100,) * 3,) * 3 in seen  # greyscale L
    assert ((128,) * 3,) * 3 in seen  # 16-bit I;16 at half range, not clipped to white
    assert (white, blue, blue) in seen  # palette: transparent corner over white
    assert (white, (0, 255, 0), (0, 255, 0)) in seen  # RGBA: transparent corner over white
    assert (blue, blue, blue) in seen  # 48x32: centre-cropped, the red side bands cut off
    jpeg = [s for s in seen if abs(s[1][0] - 200) <= 3 and s[1][1] <= 15]
    assert len(jpeg) == 1  # the RGB .JPG, within JPEG error


def test_exif_orientation_is_applied(tmp_path) -> None:
    photo = Image.new("RGB", (32, 32), (255, 0, 0))
    photo.paste((0, 0, 255), (16, 0, 32, 32))  # stored: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 3  # "rotate 180 degrees to view"
    for name in ("a", "b"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        photo.save(tmp_path / "photos" / name / "photo.png", exif=exif)
    data = hd.load_dataset(tmp_path / "photos", test_fraction=0.5)
    assert data.train_images[0, :, 16, 2].tolist() == [0, 0, 255]  # upright: blue left


def test_empty_class_folder_is_an_error_naming_it(tmp_path) -> None:
    root = write_messy_folder(tmp_path / "m", corrupt=False, empty_class=True)
    with pytest.raises(FileNotFoundError, match=f"{root / 'empty'} has no readable images"):
        hd.load_dataset(root)


def test_empty_class_in_a_split_is_named_with_its_split(tmp_path) -> None:
    root = write_messy_folder(tmp_path / "s", corrupt=False, empty_class=True, split=True)
    with pytest.raises(FileNotFoundError, match=re.escape(f"{root / 'train' / 'empty'} has no")):
        hd.load_dataset(root)


def test_splits_with_different_classes_are_an_error(tmp_path) -> None:
    root = write_messy_folder(tmp_path / "s", corrupt=False, empty_class=False, split=True)
    (root / "test" / "dog").rename(root / "test" / "wolf")
    with pytest.raises(ValueError, match="dog, wolf"):
        hd.load_dataset(root)


def test_class_of_corrupt_files_only_is_an_error(clean) -> None:
    (clean / "bad").mkdir()
    (clean / "bad" / "fake.png").write_text("not a png")
    with pytest.raises(FileNotFoundError, match=r"bad has no readable images.*fake\.png"):
        _load_quietly(clean)


def test_folder_without_images_is_an_error_naming_it(tmp_path) -> None:
    (tmp_path / "nothing" / "cat").mkdir(parents=True)
    (tmp_path / "nothing" / "README.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        hd.load_dataset(tmp_path / "nothing")


def test_missing_test_split_is_an_error_naming_the_folder(tmp_path) -> None:
    root = write_messy_folder(tmp_path / "s", corrupt=False, empty_class=False, split=True)
    for child in (root / "test").rglob("*.png"):
        child.unlink()
    for child in sorted((root / "test").rglob("*"), reverse=True):
        child.rmdir()
    (root / "test").rmdir()
    with pytest.raises(FileNotFoundError, match=r"train/ split folder but no test/"):
        hd.load_dataset(root)


def test_split_layout_keeps_the_given_test_split(tmp_path) -> None:
    root = write_messy_folder(tmp_path / "s", corrupt=False, empty_class=False, split=True)
    data = hd.load_dataset(root)
    assert data.test_split == "given"
    assert torch.bincount(data.train_labels).tolist() == [7, 6]
    assert torch.bincount(data.test_labels).tolist() == [2, 2]


def test_made_test_split_is_stratified_and_seeded(clean) -> None:
    data = hd.load_dataset(clean, test_fraction=0.3, seed=1)
    assert data.test_split.startswith("made")
    assert torch.bincount(data.test_labels).tolist() == [2, 2]  # round(0.3*7), round(0.3*6)
    again = hd.load_dataset(clean, test_fraction=0.3, seed=1)
    assert torch.equal(again.test_images, data.test_images)
    others = [hd.load_dataset(clean, test_fraction=0.3, seed=s).test_images for s in range(2, 6)]
    assert any(not torch.equal(o, data.test_images) for o in others)


# ----------------------------------------------------------------------------------------------
# Archives, read in place
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "wrapper"), [("a.tar.gz", "images"), ("b.tgz", None), ("c.zip", "images")]
)
def test_archive_loads_like_the_folder(messy, tmp_path, name, wrapper) -> None:
    folder = _load_quietly(messy)
    archive = make_archive(messy, tmp_path / name, wrapper=wrapper)
    data, message = _one_corrupt_warning(archive)
    assert torch.equal(data.train_images, folder.train_images)
    assert torch.equal(data.test_labels, folder.test_labels)
    assert data.class_names == folder.class_names
    inner = f"{wrapper}/dog/truncated.jpg" if wrapper else "dog/truncated.jpg"
    assert f"{archive}::{inner}" in message
    extracted = [p for p in data_dir().rglob("*") if p.is_file() and p.suffix != ".pt"]
    assert extracted == []  # nothing unpacked to disk, only the cache file written


@pytest.mark.parametrize("name", ["broken.tar.gz", "broken.zip"])
def test_damaged_archive_is_an_error_naming_it(clean, tmp_path, name) -> None:
    archive = make_archive(clean, tmp_path / name)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ValueError, match=re.escape(f"{archive} is not a readable")):
        hd.load_dataset(archive)


def test_archive_with_split_folders_and_a_wrapper(tmp_path) -> None:
    root = write_messy_folder(tmp_path / "s", corrupt=False, empty_class=False, split=True)
    data = hd.load_dataset(make_archive(root, tmp_path / "s.tar.gz", wrapper="cifar10-jpeg"))
    assert data.test_split == "given" and torch.bincount(data.test_labels).tolist() == [2, 2]


# ----------------------------------------------------------------------------------------------
# The ETL cache
# ----------------------------------------------------------------------------------------------


def test_second_load_reads_the_cache_without_decoding(clean, monkeypatch) -> None:
    first = hd.load_dataset(clean)
    calls = _count_decodes(monkeypatch)
    second = hd.load_dataset(clean)
    assert calls[0] == 0
    assert torch.equal(first.train_images, second.train_images)
    assert first.fingerprint == second.fingerprint
    (cache,) = (data_dir() / "cache").glob("*.pt")
    payload = torch.load(cache, weights_only=True)
    assert payload["splits"]["all"]["images"].dtype == torch.uint8
    assert payload["class_names"] == ["cat", "dog"] and payload["skipped"] == []


def test_cache_is_rebuilt_when_a_folder_changes(clean, monkeypatch) -> None:
    before = hd.load_dataset(clean)
    (clean / "dog" / "extra.png").write_bytes((clean / "dog" / "000.png").read_bytes())
    calls = _count_decodes(monkeypatch)
    after = hd.load_dataset(clean)
    assert calls[0] == 14 and after.fingerprint != before.fingerprint
    assert len(after.train_labels) + len(after.test_labels) == 14


def test_cache_is_rebuilt_when_a_file_is_rewritten(clean) -> None:
    before = hd.load_dataset(clean, test_fraction=0.5)
    path = clean / "dog" / "000.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(path)  # same name, new content
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    after = hd.load_dataset(clean, test_fraction=0.5)
    images = torch.cat([after.train_images, after.test_images])
    assert (images[:, :, 0, 0] == torch.tensor([1, 2, 3], dtype=torch.uint8)).all(1).any()
    assert after.fingerprint != before.fingerprint


def test_cache_is_rebuilt_when_an_archive_changes(clean, tmp_path, monkeypatch) -> None:
    archive = make_archive(clean, tmp_path / "a.tar.gz")
    hd.load_dataset(archive)
    (clean / "dog" / "005.png").unlink()
    make_archive(clean, archive)
    os.utime(archive, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime, surely
    calls = _count_decodes(monkeypatch)
    data = hd.load_dataset(archive)
    assert calls[0] == 12 and len(data.train_labels) + len(data.test_labels) == 12


def test_cache_depends_on_image_size(clean) -> None:
    assert hd.load_dataset(clean, image_size=16).train_images.shape[-2:] == (16, 16)
    assert hd.load_dataset(clean, image_size=32).train_images.shape[-2:] == (32, 32)
    assert len(list((data_dir() / "cache").glob("*.pt"))) == 2


def test_damaged_cache_is_rebuilt(clean) -> None:
    expected = hd.load_dataset(clean)
    (cache,) = (data_dir() / "cache").glob("*.pt")
    cache.write_bytes(b"not a torch file")
    assert torch.equal(hd.load_dataset(clean).train_images, expected.train_images)


def test_cache_write_is_atomic(clean, monkeypatch) -> None:
    def crash(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        hd.load_dataset(clean)
    assert list((data_dir() / "cache").iterdir()) == []  # neither a cache nor a temp file


# ----------------------------------------------------------------------------------------------
# Splits, subsets, counts and weights
# ----------------------------------------------------------------------------------------------

IMBALANCED = torch.tensor([0] * 100 + [1] * 50 + [2] * 10)


def test_stratified_split_keeps_class_shares_and_covers_everything() -> None:
    kept, held = hd.stratified_split(IMBALANCED, 0.2, seed=0)
    assert torch.bincount(IMBALANCED[held]).tolist() == [20, 10, 2]
    assert torch.equal(torch.cat([kept, held]).sort().values, torch.arange(len(IMBALANCED)))


def test_stratified_split_is_seeded() -> None:
    first = hd.stratified_split(IMBALANCED, 0.2, seed=7)[1]
    assert torch.equal(first, hd.stratified_split(IMBALANCED, 0.2, seed=7)[1])
    assert not torch.equal(first, hd.stratified_split(IMBALANCED, 0.2, seed=8)[1])


def test_split_and_subset_reject_bad_arguments() -> None:
    for fraction in (-0.1, 1.0, "0.2"):
        with pytest.raises(ValueError, match="fraction"):
            hd.stratified_split(IMBALANCED, fraction)
    with pytest.raises(ValueError, match="labels"):
        hd.stratified_split(torch.tensor([0.5, 1.0]), 0.2)
    with pytest.raises(ValueError, match="n must"):
        hd.stratified_subset(IMBALANCED, 0)


def test_kfold_validates_each_image_once_and_is_stratified() -> None:
    folds = hd.stratified_kfold(IMBALANCED, k=5, seed=0)
    validated = torch.cat([val for _, val in folds])
    assert torch.equal(validated.sort().values, torch.arange(len(IMBALANCED)))
    for train, val in folds:
        assert len(set(train.tolist()) & set(val.tolist())) == 0
        assert len(train) + len(val) == len(IMBALANCED)
        assert torch.bincount(IMBALANCED[val], minlength=3).tolist() == [20, 10, 2]
    again = hd.stratified_kfold(IMBALANCED, k=5, seed=0)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))


def test_kfold_folds_differ_in_size_by_at_most_one() -> None:
    labels = torch.tensor([0] * 7 + [1] * 7 + [2] * 7)  # 21 images, 4 folds: sizes 6,5,5,5
    sizes = sorted(len(val) for _, val in hd.stratified_kfold(labels, k=4, seed=3))
    assert sizes == [5, 5, 5, 6]


def test_kfold_rejects_classes_smaller_than_k() -> None:
    with pytest.raises(ValueError, match=r"class\(es\) \[1\]"):
        hd.stratified_kfold([0] * 10 + [1] * 2, k=3)
    with pytest.raises(ValueError, match="at least 2"):
        hd.stratified_kfold(IMBALANCED, k=1)


def test_stratified_subset_keeps_shares_and_is_seeded() -> None:
    subset = hd.stratified_subset(IMBALANCED, 16, seed=0)
    assert torch.bincount(IMBALANCED[subset]).tolist() == [10, 5, 1]
    assert torch.equal(subset, hd.stratified_subset(IMBALANCED, 16, seed=0))
    assert not torch.equal(subset, hd.stratified_subset(IMBALANCED, 16, seed=1))
    assert len(hd.stratified_subset(IMBALANCED, None)) == 160
    assert len(hd.stratified_subset(IMBALANCED, 10_000)) == 160
    odd = hd.stratified_subset([0] * 5 + [1] * 5 + [2] * 5, 7)
    assert len(odd) == 7  # largest remainders fill up to exactly n


def test_class_counts_table() -> None:
    table = hd.class_counts(IMBALANCED, ["a", "b", "c", "d"])
    assert table.columns.tolist() == ["class", "count", "share"]
    assert table["count"].tolist() == [100, 50, 10, 0]
    assert table["share"].tolist() == pytest.approx([0.625, 0.3125, 0.0625, 0.0])


def test_class_weights_are_inverse_frequency_with_mean_one() -> None:
    weights = hd.class_weights(IMBALANCED, 3)
    assert weights.mean().item() == pytest.approx(1.0)
    # weight x count is the same for every class: 1 / mean(1/100, 1/50, 1/10) = 23.08
    assert (weights * torch.tensor([100.0, 50.0, 10.0])).tolist() == pytest.approx([3 / 0.13] * 3)
    with_absent = hd.class_weights(IMBALANCED, 4)
    assert with_absent[3] == 0 and with_absent[:3].mean().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="num_classes is 2"):
        hd.class_weights(IMBALANCED, 2)


# ----------------------------------------------------------------------------------------------
# Channel statistics and duplicates
# ----------------------------------------------------------------------------------------------


def test_channel_stats_match_a_direct_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 8, 8), generator=gen, dtype=torch.uint8)
    images[:, 2] //= 4  # make the channels differ
    mean, std = hd.channel_stats(images, chunk_size=7)  # chunks that do not divide 50
    values = images.double() / 255
    assert mean == pytest.approx(values.mean(dim=(0, 2, 3)).tolist(), abs=1e-12)
    assert std == pytest.approx(values.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-12)
    with pytest.raises(ValueError, match="uint8"):
        hd.channel_stats(images.float())


def test_find_duplicates_groups_identical_images() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 3, 4, 4), generator=gen, dtype=torch.uint8)
    images[7] = images[2]
    images[9] = images[2]
    images[5] = images[1]
    assert hd.find_duplicates(images) == [[1, 5], [2, 7, 9]]
    images[9, 0, 0, 0] ^= 1  # one bit different: no longer a duplicate
    assert hd.find_duplicates(images) == [[1, 5], [2, 7]]


# ----------------------------------------------------------------------------------------------
# Loaders: the standard path
# ----------------------------------------------------------------------------------------------

STATS = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


def test_tensor_dataset_applies_the_transform_and_pickles() -> None:
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    dataset = hd.TensorImageDataset(
        images, torch.tensor([0, 1, 2, 3]), build_transforms(False, image_size=8, **STATS)
    )
    copy = pickle.loads(pickle.dumps(dataset))  # what worker processes receive on spawn
    image, label = copy[2]
    assert image.dtype == torch.float32 and label == 2
    assert torch.allclose(image, (images[2].float() / 255 - 0.5) / 0.25, atol=1e-6)
    with pytest.raises(ValueError, match="one label per image"):
        hd.TensorImageDataset(images, torch.tensor([0, 1]))


def test_build_dataloader_settings() -> None:
    dataset = hd.TensorImageDataset(torch.zeros(8, 3, 4, 4, dtype=torch.uint8), torch.zeros(8))
    cpu = hd.build_dataloader(dataset, batch_size=4, device="cpu")
    assert cpu.num_workers == 0 and not cpu.pin_memory and not cpu.persistent_workers
    workers = hd.build_dataloader(dataset, batch_size=4, device="cuda", num_workers=2)
    assert workers.pin_memory and workers.persistent_workers
    with pytest.raises(ValueError, match="num_workers"):
        hd.build_dataloader(dataset, batch_size=4, device="cpu", num_workers=-1)


def _standard_cfg(**changes) -> DataConfig:
    options = {"image_size": 8, "batch_size": 16, "augment": "none", "val_fraction": 0.2}
    return DataConfig(**{**options, **changes})


def test_standard_loaders_shapes_and_seeded_order() -> None:
    data = hd.make_synthetic_data(10, 4, image_size=8)
    loaders = hd.make_loaders(data, _standard_cfg(), device=TORCH_DEVICE, seed=0)
    images, labels = next(iter(loaders.train))
    assert images.shape == (16, 3, 8, 8) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert len(loaders.train.dataset) == 80 and len(loaders.val.dataset) == 20
    assert len(loaders.test.dataset) == 40 and len(loaders.train) == 5
    again = hd.make_loaders(data, _standard_cfg(), device=TORCH_DEVICE, seed=0)
    other = hd.make_loaders(data, _standard_cfg(), device=TORCH_DEVICE, seed=1)
    assert torch.equal(next(iter(again.train))[1], labels)
    assert not torch.equal(next(iter(other.train))[1], labels)


def test_standard_sampler_balances_classes() -> None:
    data = _image_data([0] * 90 + [1] * 10, [0, 1] * 5)
    cfg = _standard_cfg(balance="sampler", val_fraction=0.0, batch_size=100)
    loaders = hd.make_loaders(data, cfg, device="cpu", seed=0, **STATS)
    assert isinstance(loaders.train.sampler, torch.utils.data.WeightedRandomSampler)
    drawn = torch.cat([labels for _ in range(20) for _, labels in loaders.train])
    assert 0.4 < drawn.float().mean().item() < 0.6  # without the sampler: 0.1


# ----------------------------------------------------------------------------------------------
# Loaders: the fast path
# ----------------------------------------------------------------------------------------------


def _indexed(count: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is filled with the value i, and its label is i: batches reveal their indices."""
    images = torch.arange(count, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 4, 4)
    return images.contiguous(), torch.arange(count)


def test_fast_loader_sees_every_image_once_per_epoch() -> None:
    images, labels = _indexed()
    loader = hd.DeviceLoader(
        images, labels, batch_size=16, device=TORCH_DEVICE, shuffle=True, seed=0, **STATS
    )
    assert len(loader) == 4 and len(loader.dataset) == 50
    for _ in range(2):
        batches = list(loader)
        seen = torch.cat([b[1] for b in batches]).cpu()
        assert sorted(seen.tolist()) == list(range(50))
        assert not torch.equal(seen, torch.arange(50))  # shuffled
        for batch_images, batch_labels in batches:  # image and label stay together
            restored = batch_images[:, 0, 0, 0] * 0.25 * 255 + 0.5 * 255
            assert torch.allclose(restored, batch_labels.float(), atol=1e-3)
    dropped = hd.DeviceLoader(
        images, labels, batch_size=16, device=TORCH_DEVICE, drop_last=True, **STATS
    )
    assert len(dropped) == 3 and sum(len(b[1]) for b in dropped) == 48


def test_fast_loader_is_seeded_and_changes_between_epochs() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 8, 8), generator=gen, dtype=torch.uint8)
    options = {"batch_size": 8, "device": TORCH_DEVICE, "shuffle": True, **STATS}
    augment = BatchAugment(crop_padding=2, flip=True, cutout=2)

    def two_epochs(seed: int) -> list[torch.Tensor]:
        loader = hd.DeviceLoader(images, torch.zeros(40), augment=augment, seed=seed, **options)
        return [batch_images for _ in range(2) for batch_images, _ in loader]

    first = two_epochs(0)
    assert all(torch.equal(a, b) for a, b in zip(first, two_epochs(0), strict=True))
    assert not torch.equal(first[0], two_epochs(1)[0])
    assert not torch.equal(first[0], first[5])  # epoch 2 starts with a new order


def test_fast_loader_output_format() -> None:
    images = torch.full((6, 3, 4, 4), 255, dtype=torch.uint8)
    loader = hd.DeviceLoader(
        images, torch.arange(6), batch_size=4, device=TORCH_DEVICE, channels_last=True, **STATS
    )
    batch_images, batch_labels = next(iter(loader))
    assert batch_images.shape == (4, 3, 4, 4) and batch_images.dtype == torch.float32
    assert batch_images.device.type == torch.device(TORCH_DEVICE).type
    assert batch_images.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(batch_images, torch.full_like(batch_images, 2.0))  # (1 - .5) / .25
    assert batch_labels.dtype == torch.int64
    with pytest.raises(ValueError, match="mean and std"):
        hd.DeviceLoader(images, torch.arange(6), batch_size=4, device="cpu", mean=(0.5,), std=(1,))


def test_fast_loader_weighted_sampling_balances_classes() -> None:
    images, _ = _indexed(100)
    labels = torch.tensor([0] * 90 + [1] * 10)
    loader = hd.DeviceLoader(
        images,
        labels,
        batch_size=50,
        device=TORCH_DEVICE,
        sample_weights=hd.sample_weights(labels, 2),
        **STATS,
    )
    drawn = torch.cat([b[1].cpu() for _ in range(20) for b in loader])
    assert len(drawn) == 2000 and 0.4 < drawn.float().mean().item() < 0.6


# ----------------------------------------------------------------------------------------------
# make_loaders
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", ["standard", "fast"])
def test_make_loaders_applies_profile_sizes(loader) -> None:
    data = hd.make_synthetic_data(10, 6, image_size=8)
    cfg = _standard_cfg(loader=loader, train_images=30, eval_images=10, augment="standard")
    loaders = hd.make_loaders(data, cfg, device=TORCH_DEVICE, seed=0)
    assert [len(x.dataset) for x in loaders[:3]] == [30, 10, 10]
    assert len(loaders.train) == 1  # 30 images, batches of 16, the incomplete one dropped
    images, _ = next(iter(loaders.train))
    assert images.shape == (16, 3, 8, 8) and images.dtype == torch.float32
    used = loaders.train.dataset.images.cpu()
    assert loaders.mean == pytest.approx(hd.channel_stats(used)[0])


def test_make_loaders_fast_and_standard_agree_without_augmentation() -> None:
    data = hd.make_synthetic_data(4, 3, image_size=8)
    cfg = _standard_cfg(val_fraction=0.0)
    standard = hd.make_loaders(data, cfg, device="cpu")
    fast = hd.make_loaders(data, DataConfig(**{**cfg.__dict__, "loader": "fast"}), device="cpu")
    assert standard.val is None and fast.val is None
    for (a, la), (b, lb) in zip(standard.test, fast.test, strict=True):
        assert torch.allclose(a, b, atol=1e-5) and torch.equal(la, lb)


def test_make_loaders_rejects_bad_settings() -> None:
    data = hd.make_synthetic_data(2, 2, image_size=8)
    with pytest.raises(ValueError, match=r"image_size=32"):
        hd.make_loaders(data, DataConfig(image_size=32), device="cpu")
    with pytest.raises(ValueError, match="both mean and std"):
        hd.make_loaders(data, _standard_cfg(), device="cpu", mean=(0.5, 0.5, 0.5))


@pytest.mark.parametrize("loader", ["standard", "fast"])
def test_make_loaders_from_indices_uses_exactly_the_given_images(loader) -> None:
    data = hd.make_synthetic_data(4, 3, image_size=8)  # 40 training images
    cfg = _standard_cfg(loader=loader, train_images=5, eval_images=10)  # subsets: test only
    train_index, val_index = torch.arange(0, 40, 2), torch.tensor([1, 3, 5])
    loaders = hd.make_loaders_from_indices(
        data, cfg, train_index, val_index, device="cpu", rank=0, world_size=1
    )
    assert torch.equal(loaders.train.dataset.images.cpu(), data.train_images[train_index])
    assert torch.equal(loaders.val.dataset.labels.cpu(), data.train_labels[val_index])
    assert len(loaders.test.dataset) == 10
    assert loaders.mean == pytest.approx(hd.channel_stats(data.train_images[train_index])[0])
    empty_val = hd.make_loaders_from_indices(data, cfg, [0, 1], [], device="cpu", world_size=1)
    assert empty_val.val is None


def test_make_loaders_from_indices_rejects_bad_indices() -> None:
    data = hd.make_synthetic_data(2, 1, image_size=8)  # 20 training images
    cfg = _standard_cfg()
    with pytest.raises(ValueError, match="in both train_index and val_index"):
        hd.make_loaders_from_indices(data, cfg, [0, 1, 2], [2, 3], device="cpu")
    with pytest.raises(ValueError, match=r"train_index must lie in \[0, 19\]"):
        hd.make_loaders_from_indices(data, cfg, [0, 20], [], device="cpu")
    with pytest.raises(ValueError, match="train_index is empty"):
        hd.make_loaders_from_indices(data, cfg, [], [1], device="cpu")
    with pytest.raises(ValueError, match="integer indices"):
        hd.make_loaders_from_indices(data, cfg, torch.tensor([0.5]), [1], device="cpu")


# ----------------------------------------------------------------------------------------------
# The real data (slow; runs where CIFAR10_PATH names the shared copy)
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not Path(SHARED_CIFAR10 or "/nonexistent").exists(), reason="no CIFAR10_PATH")
def test_shared_cifar10_etl_is_fast_and_complete(monkeypatch) -> None:
    monkeypatch.setenv("CIFAR10_PATH", SHARED_CIFAR10)
    start = time.perf_counter()
    data = hd.load_dataset("cifar10")
    cold = time.perf_counter() - start
    start = time.perf_counter()
    cached = hd.load_dataset("cifar10")
    warm = time.perf_counter() - start
    assert data.train_images.shape == (50_000, 3, 32, 32) and len(data.test_labels) == 10_000
    assert torch.bincount(data.train_labels).tolist() == [5000] * 10
    assert data.class_names == hd.CIFAR10_CLASSES and data.skipped == ()
    assert torch.equal(cached.test_images, data.test_images)
    assert cold < 60 and warm < 2, (cold, warm)


# ----------------------------------------------------------------------------------------------
# Image files, formats and loader throughput
# ----------------------------------------------------------------------------------------------


def _tiny_images(n_per_class: int = 4, classes: int = 3, size: int = 8) -> tuple:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_per_class * classes, 3, size, size), generator=generator)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return images.to(torch.uint8), labels, [f"class{i}" for i in range(classes)]


def test_write_image_folder_round_trips_through_load_dataset(tmp_path) -> None:
    images, labels, names = _tiny_images()
    root = hd.write_image_folder(
        images, labels, names, tmp_path / "out", classes=["class0", "class2"], per_class=3,
        file_format="png",
    )  # fmt: skip
    assert sorted(p.name for p in root.iterdir()) == ["class0", "class2"]
    assert all(len(list((root / c).iterdir())) == 3 for c in ("class0", "class2"))
    loaded = hd.load_dataset(root, image_size=8, test_fraction=0.34, seed=0)
    assert list(loaded.class_names) == ["class0", "class2"]
    written = torch.cat([images[0:3], images[8:11]])  # PNG is lossless: the pixels come back
    got = torch.cat([loaded.train_images, loaded.test_images])
    assert sorted(map(bytes, got.flatten(1).numpy())) == sorted(
        map(bytes, written.flatten(1).numpy())
    )


def test_write_image_folder_mixed_formats(tmp_path) -> None:
    images, labels, names = _tiny_images()
    root = hd.write_image_folder(images, labels, names, tmp_path / "mixed")
    suffixes = sorted(p.suffix for p in root.rglob("*") if p.is_file())
    assert suffixes.count(".png") == 6 and suffixes.count(".jpg") == 6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": ["nope"]}, "Unknown class"),
        ({"file_format": "gif"}, "file_format"),
        ({"per_class": 0}, "per_class"),
    ],
)
def test_write_image_folder_rejects_bad_arguments(tmp_path, kwargs, message) -> None:
    images, labels, names = _tiny_images()
    with pytest.raises(ValueError, match=message):
        hd.write_image_folder(images, labels, names, tmp_path / "bad", **kwargs)


def test_compare_image_formats_reports_losslessness_and_sizes() -> None:
    images, _, _ = _tiny_images(size=16)
    table = hd.compare_image_formats(images)
    assert list(table.index) == ["PNG", "TIFF", "JPEG", "WEBP"]
    assert table.loc["PNG", "lossless"] and table.loc["TIFF", "lossless"]
    assert table.loc["PNG", "max pixel error"] == 0
    assert not table.loc["JPEG", "lossless"] and table.loc["JPEG", "mean pixel error"] > 0
    # Uncompressed TIFF stores every pixel (plus a header); random noise does not compress.
    assert table.loc["TIFF", "bytes per image"] >= 3 * 16 * 16
    assert (table["decode µs per image"] > 0).all()


def test_compare_image_formats_rejects_bad_input() -> None:
    images, _, _ = _tiny_images()
    with pytest.raises(ValueError, match="BMP"):
        hd.compare_image_formats(images, formats=("BMP",))
    with pytest.raises(ValueError, match="uint8"):
        hd.compare_image_formats(images.float())


def test_measure_throughput_counts_the_images_of_the_timed_pass(monkeypatch) -> None:
    batches = [(torch.zeros(10, 3, 4, 4), torch.zeros(10)) for _ in range(5)]
    clock = iter([100.0, 102.0])  # the timed pass takes 2 s
    monkeypatch.setattr("helpers.data._loaders.time.perf_counter", lambda: next(clock))
    assert hd.measure_throughput(batches, max_batches=3) == pytest.approx(30 / 2)


def test_measure_throughput_whole_epoch_and_errors() -> None:
    batches = [(torch.zeros(8, 3, 4, 4), torch.zeros(8)) for _ in range(4)]
    assert hd.measure_throughput(batches) > 0
    with pytest.raises(ValueError, match="no batch"):
        hd.measure_throughput([])
    with pytest.raises(ValueError, match="max_batches"):
        hd.measure_throughput(batches, max_batches=0)


def test_compare_loaders_measures_each_config_side_by_side() -> None:
    data = hd.make_synthetic_data(train_per_class=8, test_per_class=2, image_size=8)
    base = DataConfig(image_size=8, batch_size=16, val_fraction=0.0)
    table = hd.compare_loaders(
        data,
        {"standard": base, "fast": dataclasses.replace(base, loader="fast")},
        device="cpu",
        max_batches=3,
    )
    assert list(table.index) == ["standard", "fast"]
    assert list(table["loader"]) == ["standard", "fast"]
    assert (table["images/s"] > 0).all()
    assert table["speed-up"].iloc[0] == 1.0
    expected = table["images/s"].iloc[1] / table["images/s"].iloc[0]
    assert table["speed-up"].iloc[1] == pytest.approx(expected)


def test_long_tailed_subset_decays_class_sizes_exponentially() -> None:
    labels = torch.arange(5).repeat_interleave(200)
    index = hd.long_tailed_subset(labels, 16.0, seed=0)
    counts = torch.bincount(labels[index]).tolist()
    assert counts == [200, 100, 50, 25, 12]  # 200 * 16 ** (-c / 4), rounded
    assert torch.equal(index, hd.long_tailed_subset(labels, 16.0, seed=0))
    assert not torch.equal(index, hd.long_tailed_subset(labels, 16.0, seed=1))
    assert len(hd.long_tailed_subset(labels, 1.0)) == len(labels)
    with pytest.raises(ValueError, match="at least 1"):
        hd.long_tailed_subset(labels, 0.5)


def test_take_keeps_the_chosen_images() -> None:
    data = hd.make_synthetic_data(train_per_class=4, test_per_class=2, image_size=8)
    kept = hd.take(data, train=[0, 5, 9], test=torch.tensor([1]))
    assert torch.equal(kept.train_images, data.train_images[[0, 5, 9]])
    assert torch.equal(kept.train_labels, data.train_labels[[0, 5, 9]])
    assert torch.equal(kept.test_labels, data.test_labels[[1]])
    assert kept.class_names == data.class_names and kept.source == data.source
    assert len(hd.take(data).train_labels) == len(data.train_labels)


# ----------------------------------------------------------------------------------------------
# Loaders: repeatable epochs and shares per process (what exact resume and DDP rely on)
# ----------------------------------------------------------------------------------------------


def _indices(batches) -> list[int]:
    """The image indices of an epoch of ``_indexed`` images (labels are the indices)."""
    return torch.cat([labels.cpu() for _, labels in batches]).tolist()


def test_epoch_sampler_repeats_each_epoch_and_pairs_indices_with_seeds() -> None:
    sampler = hd.EpochSampler(20, seed=3)
    epochs = [list(sampler) for _ in range(3)]  # each pass is the next epoch
    assert all(sorted(i for i, _ in epoch) == list(range(20)) for epoch in epochs)
    assert epochs[0] != epochs[1]
    sampler.set_epoch(1)
    assert list(sampler) == epochs[1]  # epoch 1 again, exactly, seeds included
    assert len({seed for epoch in epochs for _, seed in epoch}) == 60  # one seed per draw
    assert list(hd.EpochSampler(20, seed=3)) == epochs[0]
    assert list(hd.EpochSampler(20, seed=4)) != epochs[0]
    plain = hd.EpochSampler(5, shuffle=False, seeds=False)
    assert list(plain) == [0, 1, 2, 3, 4] and len(plain) == 5


def test_epoch_sampler_shares_are_disjoint_and_even_for_training() -> None:
    shares = [hd.EpochSampler(23, seed=0, rank=r, world_size=3, seeds=False) for r in range(3)]
    for _epoch in range(2):  # each pass is the next epoch
        drawn = [set(s) for s in shares]
        assert [len(d) for d in drawn] == [7, 7, 7] == [len(s) for s in shares]
        assert len(set.union(*drawn)) == 21  # disjoint; 23 % 3 = 2 left out this epoch
    evaluation = [hd.EpochSampler(23, shuffle=False, rank=r, world_size=3) for r in range(3)]
    assert sorted(i for s in evaluation for i, _ in s) == list(range(23))  # each image once
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 3\)"):
        hd.EpochSampler(10, rank=3, world_size=3)


def test_seeded_transform_repeats_and_leaves_the_global_generator_alone() -> None:
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    transform = build_transforms(True, image_size=8, preset="strong", **STATS)
    dataset = hd.TensorImageDataset(images, torch.arange(4), transform)
    state = torch.get_rng_state()
    first, again = dataset[(2, 12345)][0], dataset[(2, 12345)][0]
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, again) and not torch.equal(first, dataset[(2, 54321)][0])


@pytest.mark.parametrize("loader", ["standard", "fast"])
def test_set_loader_epoch_replays_an_epoch_exactly_with_augmentation(loader) -> None:
    data = hd.make_synthetic_data(6, 2, image_size=8)
    cfg = _standard_cfg(loader=loader, augment="strong", val_fraction=0.0)
    train = hd.make_loaders(data, cfg, device=TORCH_DEVICE, seed=0, **STATS).train
    epochs = [[(x.clone(), y.clone()) for x, y in train] for _ in range(3)]
    fresh = hd.make_loaders(data, cfg, device=TORCH_DEVICE, seed=0, **STATS).train
    hd.set_loader_epoch(fresh, 2)  # a resumed run starts here
    torch.manual_seed(999)  # the global generator does not matter
    replay = list(fresh)
    assert len(replay) == len(epochs[2]) == 3
    for (a, la), (b, lb) in zip(epochs[2], replay, strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(epochs[1][0][0], epochs[2][0][0])


def test_standard_augmentation_does_not_depend_on_worker_processes() -> None:
    data = hd.make_synthetic_data(4, 2, image_size=8)
    cfg = _standard_cfg(augment="strong", val_fraction=0.0, batch_size=10)
    batches = []
    for workers in (0, 2):
        cfg = dataclasses.replace(cfg, num_workers=workers)
        train = hd.make_loaders(data, cfg, device="cpu", seed=0, **STATS).train
        batches.append([x for _ in range(2) for x, _ in train])
    assert all(torch.equal(a, b) for a, b in zip(*batches, strict=True))


@pytest.mark.parametrize("loader", ["standard", "fast"])
def test_make_loaders_shares_the_data_out_by_rank(loader) -> None:
    images = torch.arange(50, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 8, 8)
    data = _image_data(list(range(50)), list(range(9)))  # label i for image i
    data = dataclasses.replace(data, train_images=images.contiguous(), test_images=images[:9])
    cfg = _standard_cfg(loader=loader, val_fraction=0.0, batch_size=4)
    shares = [
        hd.make_loaders(data, cfg, device=TORCH_DEVICE, rank=r, world_size=2, **STATS)
        for r in range(2)
    ]
    train = [_indices(s.train) for s in shares]
    assert len(train[0]) == len(train[1]) == 24  # 25 images each, the incomplete batch dropped
    assert not set(train[0]) & set(train[1])
    test = [_indices(s.test) for s in shares]
    assert sorted(test[0] + test[1]) == list(range(9))  # evaluation: every image exactly once
    with pytest.raises(ValueError, match="rank must be"):
        hd.make_loaders(data, cfg, device="cpu", rank=2, world_size=2, **STATS)
