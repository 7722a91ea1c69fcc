"""The command line of :mod:`helpers`: ``python -m helpers <command> ...``.

Commands:
    info    what this environment has: versions, device, profile and data source.
    train   train a model from a YAML config and ``key=value`` overrides, alone or under
            ``torchrun`` (``torchrun --nproc_per_node 2 -m helpers train ...``).
    fast    the fast CIFAR-10 recipe (helpers.fast) for several seeds, with a results table.
    export  export a checkpoint to ONNX and TorchScript with its sidecar, parity-checked.
    serve   serve a checkpoint, TorchScript or ONNX model over HTTP (the ``serve`` extra).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from helpers import config, runtime


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m helpers``; every help string says its default."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers", description="Image-classification pipeline helpers."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    info = commands.add_parser("info", help="print versions, device, profile and data source")
    info.add_argument("--device", default="auto", help="device to describe (default: auto)")
    info.add_argument(
        "--profile",
        default="auto",
        choices=config.PROFILE_CHOICES,
        help="run profile to resolve (default: auto)",
    )
    info.add_argument(
        "--source", default="cifar10", help="data source to describe (default: cifar10)"
    )
    _add_train_parser(commands)
    _add_fast_parser(commands)
    _add_export_parser(commands)
    _add_serve_parser(commands)
    return parser


def _add_train_parser(commands: argparse._SubParsersAction) -> None:
    """The ``train`` command's arguments."""
    train = commands.add_parser(
        "train",
        help="train a model from a config, alone or under torchrun",
        description="Train a model: load the data, fit with checkpoints (resuming from the "
        "run's last.pt), test the best weights and write history.json next to the "
        "checkpoints. The run profile sets the sizes (images, epochs, steps) that neither "
        "the config file nor an override sets.",
    )
    train.add_argument(
        "--config", default=None, help="YAML run config (default: none, the built-in defaults)"
    )
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    train.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="start afresh even when the run's last.pt exists (default: resume)",
    )
    train.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides such as profile=smoke train.lr=0.1 (default: none)",
    )


def _add_fast_parser(commands: argparse._SubParsersAction) -> None:
    """The ``fast`` command's arguments."""
    fast = commands.add_parser(
        "fast",
        help="train the fast CIFAR-10 recipe (helpers.fast) for several seeds",
        description="Train FastNet with the fast recipe on every training image, test on every "
        "test image (with and without test-time augmentation), one line per epoch, then a "
        "table of accuracy and seconds per seed. The profile sizes the run (full: 9.9 "
        "epochs for a GPU; quick: the CPU schedule; smoke: one epoch on 1,024 images).",
    )
    fast.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 to run (default: 3)")
    fast.add_argument(
        "--profile",
        default="auto",
        choices=config.PROFILE_CHOICES,
        help="run profile (default: auto, full with CUDA and quick without)",
    )
    fast.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    fast.add_argument("--source", default="cifar10", help="data source (default: cifar10)")
    fast.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="FastConfig overrides such as epochs=6 lookahead=false (default: none)",
    )


def _add_export_parser(commands: argparse._SubParsersAction) -> None:
    """The ``export`` command's arguments."""
    export = commands.add_parser(
        "export",
        help="export a checkpoint to ONNX and TorchScript, checked against PyTorch",
        description="Export a helpers.train checkpoint to <out>/<name>.onnx and "
        "<out>/<name>.ts, each checked against eager PyTorch, with the sidecar <name>.json "
        "(image size, mean, std, class names, version) that serving needs.",
    )
    export.add_argument("--checkpoint", required=True, help="a helpers.train checkpoint (.pt)")
    export.add_argument("--out", required=True, help="the folder to write to")
    export.add_argument(
        "--format",
        dest="formats",
        nargs="+",
        default=["onnx", "torchscript"],
        choices=["onnx", "torchscript"],
        help="what to write (default: onnx torchscript)",
    )
    export.add_argument("--name", default="model", help="the files' stem (default: model)")
    export.add_argument(
        "--version", default=None, help="model version (default: <model>-epoch<N>-<hash>)"
    )


def _add_serve_parser(commands: argparse._SubParsersAction) -> None:
    """The ``serve`` command's arguments."""
    serve = commands.add_parser(
        "serve",
        help="serve a model over HTTP: predictions, explanations, metrics, an upload page",
        description="Serve a checkpoint (.pt), TorchScript (.ts) or ONNX (.onnx) model with "
        "FastAPI and uvicorn. Exports need their sidecar JSON. Needs the serve extra.",
    )
    serve.add_argument("--model", required=True, help="the model file (.pt, .ts or .onnx)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    serve.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "onnx"],
        help="runtime; auto picks it from the file suffix (default: auto)",
    )
    serve.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op CPU threads per request; concurrent requests and workers use the other "
        "cores (default: 1)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes, each with its own copy of the model; each counts its own "
        "requests in /metrics (default: 1)",
    )
    serve.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="requests decoded and classified at once per process, each in a thread; more "
        "wait their turn (default: the CPU cores, at least 2)",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log every request; /metrics counts them either way (default: off)",
    )
    serve.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint for /explain with an export (default: the one its sidecar names)",
    )
    serve.add_argument(
        "--max-upload-bytes",
        type=int,
        default=10 * 1024 * 1024,
        help="largest request body accepted (default: 10485760)",
    )


def run_info(device: str, profile: str, source: str) -> None:
    """Print what ``python -m helpers info`` reports."""
    from helpers import data

    chosen = runtime.get_device(device)
    resolved = config.resolve_profile(profile, cuda_available=chosen.type == "cuda")
    rows = dict(runtime.describe_runtime(chosen))
    rows["profile"] = f"{resolved.name} ({resolved.description})"
    rows.update({f"data {key}": value for key, value in data.describe_source(source).items()})
    width = max(map(len, rows))
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")


def run_train(config_path: str | None, overrides: Sequence[str], device: str, resume: bool) -> int:
    """Run ``python -m helpers train``; return the exit status (2 for a bad config)."""
    from helpers import train

    info = runtime.init_distributed(device)
    try:
        runtime.set_threads()  # under torchrun the cores are shared out between processes
        try:
            cfg = config.load_run_config(
                config_path, overrides, cuda_available=info.device.type == "cuda"
            )
        except (ValueError, FileNotFoundError) as err:
            print(f"python -m helpers train: error: {err}", file=sys.stderr)
            return 2
        if info.is_main:
            print(
                f"train: {cfg.model.name} on {cfg.data.source}, profile {cfg.profile}, "
                f"world size {info.world_size}",
                flush=True,
            )
        train.run_training(cfg, device=info.device, resume=resume)
    finally:
        runtime.cleanup_distributed()
    return 0


def run_fast(args: argparse.Namespace) -> int:
    """Run ``python -m helpers fast``; return the exit status (2 for bad settings)."""
    from helpers import data, fast

    device = runtime.get_device(args.device)
    runtime.set_threads()
    profile = config.resolve_profile(args.profile, cuda_available=device.type == "cuda")
    try:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be at least 1, got {args.seeds}.")
        cfg = fast.fast_config(profile, args.overrides)
        images = data.load_dataset(args.source, profile=profile)
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m helpers fast: error: {err}", file=sys.stderr)
        return 2
    print(
        f"fast: {images!r} on {device}, profile {profile.name}, {cfg.epochs:g} epochs", flush=True
    )
    on_device = fast.prepare_fast_data(images, cfg, device=device)
    model = fast.build_fast_model(cfg, device, num_classes=images.num_classes)
    if cfg.compile:
        print("compiling: a few untimed warm-up steps first", flush=True)
        fast.warm_up(model, on_device, cfg)
    results = []
    for seed in range(args.seeds):
        print(f"--- seed {seed}", flush=True)
        result = fast.train_fast(
            on_device, cfg, device=device, seed=seed, progress=True, model=model
        )
        results.append(result)
    print(fast.format_results(results))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Run ``python -m helpers export``; return the exit status (2 for a bad checkpoint)."""
    from helpers import export

    try:
        paths = export.export_model(
            args.checkpoint, args.out, formats=args.formats, name=args.name, version=args.version
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m helpers export: error: {err}", file=sys.stderr)
        return 2
    for kind, path in paths.items():
        print(f"{kind:<12} {path}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    """Run ``python -m helpers serve`` until interrupted; 2 for a model that cannot load."""
    try:
        from helpers import serve
    except ImportError as err:
        print(
            f"python -m helpers serve: error: {err}; pip install 'helpers[serve]'", file=sys.stderr
        )
        return 2
    spec = serve.AppSpec(
        model=args.model,
        backend=args.backend,
        threads=args.threads,
        checkpoint=args.checkpoint,
        max_upload_bytes=args.max_upload_bytes,
        max_concurrency=args.concurrency,
    )
    try:
        if args.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {args.workers}.")
        app = spec.create_app()  # loads the model: a bad one fails here, before serving
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m helpers serve: error: {err}", file=sys.stderr)
        return 2
    predictor = app.state.settings.predictor
    workers = f", {args.workers} workers" if args.workers > 1 else ""
    print(f"serving {predictor} on http://{args.host}:{args.port}{workers}", flush=True)
    options = {"host": args.host, "port": args.port, "access_log": args.access_log}
    if args.workers == 1:
        serve.run_server(app, **options)
    else:
        del app, predictor  # each worker process loads its own
        serve.run_workers(spec, workers=args.workers, **options)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "info":
        run_info(args.device, args.profile, args.source)
    elif args.command == "train":
        return run_train(args.config, args.overrides, args.device, args.resume)
    elif args.command == "fast":
        return run_fast(args)
    elif args.command == "export":
        return run_export(args)
    elif args.command == "serve":
        return run_serve(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
