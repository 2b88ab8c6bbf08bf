"""A domain-shifted copy of the test-bed's evaluation images, for measuring palindrome training
where the pretrained model meets photos unlike its pretraining ones (another camera or lighting).

    python benchmarks/testbed/shift.py --out /tmp/shift
    python benchmarks/quality.py --images /tmp/shift/images --masks /tmp/shift/masks --quick

Writes only the 72 evaluation images of ``split.json`` (never the pretraining ones), each with
its colour channels rotated (a colour cast), contrast lowered to 55%, gamma 0.7 (washed out),
a Gaussian blur of about 1.5 px per 256 px of width (out of focus) and seeded sensor noise
(sigma 3% of the range). The masks are linked, not copied. The source folder is not changed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data as tbdata


def shift_image(image: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """The shifted version of one BGR uint8 image (same size, uint8)."""
    f = image.astype(np.float32) / 255.0
    f = f[:, :, [1, 2, 0]]
    f = 0.5 + 0.55 * (f - 0.5)
    f = np.clip(f, 0.0, 1.0) ** 0.7
    k = max(3, round(image.shape[1] / 256 * 1.5) * 2 + 1)
    f = cv2.GaussianBlur(f, (k, k), 0)
    f = f + rng.normal(0.0, 0.03, f.shape).astype(np.float32)
    return (np.clip(f, 0.0, 1.0) * 255.0).astype(np.uint8)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data", type=Path, default=tbdata.DEFAULT_DATA, help="images/ and masks/ of the test-bed data"
    )
    p.add_argument("--out", type=Path, required=True, help="new folder for images/ and masks/")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    split = json.loads(tbdata.SPLIT_FILE.read_text())
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty; choose a new folder")
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    (args.out / "masks").mkdir(exist_ok=True)
    rng = np.random.RandomState(args.seed)
    for name in split["eval"]:
        image = cv2.imread(str(args.data / "images" / name), cv2.IMREAD_COLOR)
        if image is None:
            raise SystemExit(f"cannot read {args.data / 'images' / name}")
        if not cv2.imwrite(str(args.out / "images" / name), shift_image(image, rng)):
            raise SystemExit(f"cannot write {args.out / 'images' / name}")
        os.symlink((args.data / "masks" / name).resolve(), args.out / "masks" / name)
    print(
        f"{len(split['eval'])} shifted images in {args.out / 'images'}, masks linked in {args.out / 'masks'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
