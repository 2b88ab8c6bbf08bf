"""The command line run in-process, as the CLI tests run it."""

from __future__ import annotations

from descriptron_sam2pal.cli import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``sam2pal ARGV``."""
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def propagate_argv(template_image, template_mask, colors, images, checkpoint, out, *extra) -> list:
    """``sam2pal propagate`` from one template (image + colour mask) at 128 px on the CPU."""
    return [
        "propagate",
        "--template-image", template_image,
        "--template-mask", template_mask,
        "--colors", colors,
        "--images", images,
        "--checkpoint", checkpoint,
        "--image-size", 128,
        "--device", "cpu",
        "--out", out,
        *extra,
    ]  # fmt: skip
