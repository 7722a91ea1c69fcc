"""Data-stage benchmark: ETL time (cold and cached) and loader throughput, side by side.

Compares, in one run on the same images with the same augmentation (random crop with reflect
padding and horizontal flip): the standard ``DataLoader`` path with 0 and 2 worker processes,
and the fast path that keeps the whole data set on the device. Results are printed and written
to ``book/benchmarks/data_loading.md``, which the book's benchmarks page includes.

Usage::

    CIFAR10_PATH=../shared/data/cifar10-jpeg.tar.gz python -m benchmarks.data_loading
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

import pandas as pd

import helpers as hp
from benchmarks._report import markdown_table, write_report


def time_etl(source: str, image_size: int) -> tuple[float, float, hp.data.ImageData]:
    """Seconds for a cold ETL (empty cache folder) and for a cached load of ``source``."""
    with tempfile.TemporaryDirectory() as cache_root:
        previous = os.environ.get("HELPERS_DATA_DIR")
        os.environ["HELPERS_DATA_DIR"] = cache_root
        try:
            start = time.perf_counter()
            hp.data.load_dataset(source, image_size=image_size, download=False)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            data = hp.data.load_dataset(source, image_size=image_size, download=False)
            cached = time.perf_counter() - start
        finally:
            if previous is None:
                del os.environ["HELPERS_DATA_DIR"]
            else:
                os.environ["HELPERS_DATA_DIR"] = previous
    return cold, cached, data


def loader_table(
    data: hp.data.ImageData, *, batch_size: int, batches: int, seed: int
) -> pd.DataFrame:
    """Images per second of each loader path, same images and same crop-and-flip augmentation."""
    device = hp.runtime.get_device()
    base = hp.config.DataConfig(batch_size=batch_size, augment="standard", val_fraction=0.0)
    configs = {
        "standard DataLoader, 2 workers": replace(base, num_workers=2),
        "standard DataLoader, 0 workers": base,
        f"fast path (whole set on {device.type})": replace(base, loader="fast"),
    }
    return hp.data.compare_loaders(data, configs, device=device, seed=seed, max_batches=batches)


def main() -> None:
    """Run the benchmark and write its page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="cifar10", help="data source (default: cifar10)")
    parser.add_argument(
        "--batch-size", type=int, default=256, help="images per batch (default: 256)"
    )
    parser.add_argument(
        "--batches", type=int, default=60, help="batches timed per loader (default: 60)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    args = parser.parse_args()

    cold, cached, data = time_etl(args.source, 32)
    print(
        f"ETL of {len(data.train_images) + len(data.test_images):,} images: cold {cold:.1f} s, "
        f"cached {cached:.2f} s",
        flush=True,
    )
    table = loader_table(data, batch_size=args.batch_size, batches=args.batches, seed=args.seed)
    print(table.round(1).to_string(), flush=True)
    rows = [
        (name, f"{r['images/s']:,.0f}", f"{r['speed-up']:.1f}x") for name, r in table.iterrows()
    ]
    body = (
        f"ETL of the {len(data.train_images) + len(data.test_images):,} images of `{data.source}`"
        f" at 32x32: **{cold:.1f} s** cold (decode and write the cache), **{cached:.2f} s** from"
        " the cache.\n\n"
        f"Loader throughput, batch size {args.batch_size}, {args.batches} batches each, random"
        " crop (reflect padding 4) and horizontal flip in every path:\n\n"
        + markdown_table(["loader", "images/s", "vs. 2 workers"], rows)
    )
    path = write_report("data_loading", "Data loading", body)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
