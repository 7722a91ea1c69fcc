"""The command line of :mod:`helpers`: ``python -m helpers <command> ...``.

Commands:
    info    what this environment has: versions, device, profile and data source.
    train   train a model from a YAML config and ``key=value`` overrides, alone or under
            ``torchrun`` (``torchrun --nproc_per_node 2 -m helpers train ...``).
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
        "--threads", type=int, default=None, help="intra-op CPU threads (default: the runtime's)"
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
    try:
        predictor = serve.Predictor.from_path(
            args.model, args.backend, threads=args.threads, checkpoint=args.checkpoint
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"python -m helpers serve: error: {err}", file=sys.stderr)
        return 2
    print(f"serving {predictor} on http://{args.host}:{args.port}", flush=True)
    app = serve.create_app(predictor, max_upload_bytes=args.max_upload_bytes)
    serve.run_server(app, host=args.host, port=args.port)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "info":
        run_info(args.device, args.profile, args.source)
    elif args.command == "train":
        return run_train(args.config, args.overrides, args.device, args.resume)
    elif args.command == "export":
        return run_export(args)
    elif args.command == "serve":
        return run_serve(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
