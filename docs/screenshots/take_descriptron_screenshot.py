"""Screenshot of Descriptron's own window opened from the workspace (File > Open in Descriptron).

Run it under a virtual display from the repository root:

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python docs/screenshots/take_descriptron_screenshot.py

It copies one BeetleFlow photo (``--data``) into a throw-away project with its five
structures as a Descriptron annotation file, opens it in the real workspace, and
triggers File > Open in Descriptron. Descriptron loads its SAM2 model
(``sam2_hiera_large.pt``) from ``$DESCRIPTRON_SAM2_CHECKPOINT`` or its cache; without
one (no download here) ``--random-sam2`` writes a randomly initialised one into the
work folder (about 900 MB: the window and the annotations are Descriptron's, its
SAM2 answers would be noise). When Descriptron's window shows the photo, the whole
screen is saved to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_DATA = Path("/work/shared/data/beetleflow-5class-train")
MASK_COLORS = {
    "head": (200, 0, 0),
    "pronotum": (0, 200, 0),
    "elytra": (0, 0, 200),
    "legs": (200, 200, 0),
    "antennas": (200, 0, 200),
}


def make_project(data: Path, work: Path, name: str) -> Path:
    import numpy as np
    from PIL import Image

    from descriptron_sam2pal.store import AnnotationStore

    folder = work / "specimens"
    folder.mkdir(parents=True)
    shutil.copy(data / "images" / name, folder / name)
    store = AnnotationStore.open(folder)
    record = store.images[0]
    rgb = np.asarray(Image.open(data / "masks" / name).convert("RGB"))
    for structure, colour in MASK_COLORS.items():
        mask = (rgb == np.array(colour, np.uint8)).all(-1)
        if mask.any():
            store.add_structure(record.id, structure, mask, attributes={"source": "hand"})
    store.save()
    return folder


def random_sam2_large(path: Path) -> Path:
    import torch
    from sam2.build_sam import build_sam2

    from descriptron_sam2pal.app.torchvision_parts import install

    install()
    model = build_sam2("configs/sam2/sam2_hiera_l.yaml", None, device="cpu", apply_postprocessing=False)
    torch.save({"model": model.state_dict()}, path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--photo", default="0003.png")
    parser.add_argument("--out", type=Path, default=HERE / "09_open_in_descriptron.png")
    parser.add_argument("--random-sam2", action="store_true")
    parser.add_argument(
        "--wait", type=float, default=240, help="seconds to wait for Descriptron's SAM2 model"
    )
    parser.add_argument("--settle", type=float, default=90, help="seconds for its window to show the photo")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="descriptron-shot-"))
    os.environ["DESCRIPTRON_CACHE"] = str(work / "cache")
    if args.random_sam2 and not os.environ.get("DESCRIPTRON_SAM2_CHECKPOINT"):
        os.environ["DESCRIPTRON_SAM2_CHECKPOINT"] = str(random_sam2_large(work / "sam2_hiera_large.pt"))
    folder = make_project(args.data, work, args.photo)

    from PyQt5.QtCore import QSettings
    from PyQt5.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from descriptron_sam2pal.app.workspace import Workspace

    window = Workspace(settings=QSettings(str(work / "settings.ini"), QSettings.IniFormat))
    window.load_plugins()
    window.fit_to_screen()
    window.show()
    assert window.open_path(folder)
    deadline = time.monotonic() + 30
    while window.current_image_array() is None and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.05)
    run = window.open_in_descriptron()
    if run is None:
        print("Open in Descriptron did not start", file=sys.stderr)
        return 1
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline and run.running() and "Using device" not in run.output():
        app.processEvents()
        time.sleep(0.2)
    settle = (
        time.monotonic() + args.settle
    )  # it builds SAM2, its window, then opens the photo and annotations
    while time.monotonic() < settle and run.running():
        app.processEvents()
        time.sleep(0.2)
    print(run.output()[-3000:])
    shot = app.primaryScreen().grabWindow(0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shot.save(str(args.out))
    from PIL import Image

    Image.open(args.out).convert("RGB").quantize(256).save(args.out, optimize=True)  # a third of the size
    print(f"saved {args.out} (Descriptron {'running' if run.running() else 'stopped'})")
    run.stop()
    window.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
