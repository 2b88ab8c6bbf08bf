"""The ``sam2pal`` command: train / propagate / evaluate / gui (one engine, two faces)."""

from __future__ import annotations

import argparse
import sys

from . import UserError, __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sam2pal",
        description=(
            "SAM2-PAL for Descriptron: outline structures on a template specimen, "
            "fine-tune SAM2 on your unlabeled specimens, and segment them all."
        ),
    )
    parser.add_argument("--version", action="version", version=f"sam2pal {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"sam2pal: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sam2pal: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
