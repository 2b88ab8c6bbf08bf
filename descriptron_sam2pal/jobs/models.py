"""Which model a job runs: one rule for the checkpoint, the image size and the adapter.

A *choice* is a checkpoint path, ``DEMO_CHOICE`` (the randomly initialised mini
model, for trying the buttons), ``BEETLE_DEMO_CHOICE`` (the small pretrained
beetle model shipped with the plugin) or None (the checkpoint Descriptron
would use: ``$DESCRIPTRON_SAM2_CHECKPOINT``, ``../checkpoints/``, its cache).

The image size is, in this order: the one asked for; the adapter's (an adapter
runs at the size it was trained at); the beetle demo's own (it was pretrained
at 256 px); the config's (1024 for Meta's checkpoints).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from descriptron_sam2pal import UserError

#: The choice "use the randomly initialised mini model".
DEMO_CHOICE = "demo"
DEMO_LABEL = "untrained demo model \u2014 not for real work"
#: The choice "use the packaged beetle model" (resources/checkpoints/sam2pal_beetle.pt).
BEETLE_DEMO_CHOICE = "demo-beetles"
BEETLE_DEMO_LABEL = ("Demo model: beetles only (small, trained on ~400 beetle photos for clicks, boxes and "
                     "templates; not for real work)")
#: The input size the beetle demo was pretrained at; other sizes only make it worse and slower.
BEETLE_DEMO_SIZE = 256


@dataclass(frozen=True)
class ModelRequest:
    """What to load: ``choice`` (see the module docstring), ``device`` ("auto", "cpu",
    "cuda", "mps"), ``image_size`` (None: see the module docstring), ``adapter`` (an
    adapter file or a training run folder holding ``adapter.pt``), ``precision``
    ("auto", "fp32", "bf16") and ``config`` (normally chosen from the checkpoint)."""

    choice: str | None = None
    device: str = "auto"
    image_size: int | None = None
    adapter: str | None = None
    precision: str = "auto"
    config: str | None = None


def beetle_checkpoint_path() -> Path:
    """The packaged beetle demo checkpoint (benchmarks/testbed/pretrain.py, then demo.py, made it)."""
    return Path(
        str(resources.files("descriptron_sam2pal") / "resources" / "checkpoints" / "sam2pal_beetle.pt")
    )


def beetle_demo_available() -> bool:
    return beetle_checkpoint_path().is_file()


def require_beetle_demo() -> None:
    """UserError (saying what to do) when the beetle demo model is not installed."""
    if not beetle_demo_available():
        raise UserError("the beetle demo model is not installed with this copy of the plugin "
                        f"({beetle_checkpoint_path()} is missing); reinstall it or choose a checkpoint")


def describe_choice(choice: str | None) -> str:
    if choice is None:
        return "No SAM2 checkpoint chosen"
    if choice == DEMO_CHOICE:
        return f"Mini SAM2 ({DEMO_LABEL})"
    if choice == BEETLE_DEMO_CHOICE:
        return BEETLE_DEMO_LABEL
    return Path(choice).name


def resolve_checkpoint(choice: str | None) -> str:
    """The choice with None replaced by the checkpoint Descriptron would use; UserError when
    there is none or a given file does not exist."""
    if choice in (DEMO_CHOICE, BEETLE_DEMO_CHOICE):
        if choice == BEETLE_DEMO_CHOICE:
            require_beetle_demo()
        return choice
    if choice is None:
        from descriptron_sam2pal.model.checkpoints import find_checkpoint

        found = find_checkpoint()
        if found is None:
            raise UserError("no SAM2 checkpoint found where Descriptron keeps them; pass --checkpoint "
                            "FILE (in the workspace: Browse...), or fetch one with "
                            "`sam2pal download sam2.1_hiera_tiny.pt` (Download...)")
        return str(found)
    path = Path(choice).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint {choice} does not exist; check the path")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {choice} is an empty file (an interrupted download?); "
                        "download it again with `sam2pal download`")
    return str(path)


def adapter_file(adapter: str | Path) -> Path:
    """The adapter file of ``adapter`` (a file, or a training run folder holding adapter.pt)."""
    path = Path(adapter).expanduser()
    if path.is_dir():
        path = path / "adapter.pt"
    if not path.is_file():
        raise UserError(f"no trained adapter at {path}; pass the RUN_DIR of `sam2pal train` "
                        "(or its adapter.pt)")
    return path


def fixed_image_size(choice: str | None) -> int | None:
    """The only sensible input size of a choice, when it has one (the beetle demo's), else None.
    The GUI shows it instead of a preset's size, so what is shown is what runs."""
    return BEETLE_DEMO_SIZE if choice == BEETLE_DEMO_CHOICE else None


def resolved_image_size(request: ModelRequest) -> int | None:
    """The input size ``request`` will run at, before any model is built (None: the
    config's own). Reads the adapter's header when there is one."""
    if request.image_size is not None:
        return request.image_size
    if request.adapter:
        from descriptron_sam2pal.model.adapter_file import read_adapter

        info, _ = read_adapter(adapter_file(request.adapter))
        if info.image_size:
            return int(info.image_size)
    return fixed_image_size(request.choice)


def load_model(request: ModelRequest) -> Any:
    """The LoadedModel for ``request``, with its adapter loaded (eval mode). Slow: run it
    in a worker or under a progress bar."""
    from descriptron_sam2pal.model.build import MINI_CONFIG, build_model

    choice = resolve_checkpoint(request.choice)
    adapter = adapter_file(request.adapter) if request.adapter else None
    size = resolved_image_size(request)
    if choice == DEMO_CHOICE:
        model = build_model(request.config or MINI_CONFIG, device=request.device, image_size=size, seed=0)
    elif choice == BEETLE_DEMO_CHOICE:
        model = build_model(request.config, beetle_checkpoint_path(), device=request.device, image_size=size)
    else:
        model = build_model(request.config, choice, device=request.device, image_size=size)
    model.precision = request.precision
    if adapter is not None:
        from descriptron_sam2pal.model.adapter_file import load_adapter

        load_adapter(adapter, model)
        model.sam.eval()
    return model


def estimated_peak_bytes(image_size: int, training: bool = False) -> int:
    """A deliberately generous estimate of the memory a job needs at ``image_size`` px, growing
    with the pixel count (2.2 GB at 512 px and 5.9 GB at 1024 px for propagation by this formula),
    well above the peaks measured for SAM2.1 tiny on a CPU (benchmarks/README.md, results-1024.md);
    training holds activations for the backward pass, so its pixel term is tripled. Only sizes
    far beyond these are refused."""
    per_image = 5.0e9 * (image_size / 1024) ** 2
    return int(0.9e9 + per_image * (3 if training else 1))


def total_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory_for(image_size: int | None, training: bool = False) -> None:
    """UserError before any work when ``image_size`` clearly cannot fit in this computer's
    memory, with the estimate and the largest size that would."""
    total = total_memory_bytes()
    if image_size is None or total is None:
        return
    need = estimated_peak_bytes(image_size, training)
    if need <= 0.9 * total:
        return
    fits = max((s for s in range(64, image_size, 32) if estimated_peak_bytes(s, training) <= 0.9 * total),
               default=64)
    raise UserError(f"an input size of {image_size} px needs about {need / 1e9:.0f} GB of memory to "
                    f"{'train' if training else 'segment'}, and this computer has {total / 1e9:.0f} GB; "
                    f"use --image-size {fits} or less (SAM2 was trained at 1024)")
