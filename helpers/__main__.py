"""The command line of :mod:`helpers`: ``python -m helpers <command> ...``.

Commands:
    info    what this environment has: versions, device, profile and data source.
"""

from __future__ import annotations

import argparse
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
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "info":
        run_info(args.device, args.profile, args.source)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
