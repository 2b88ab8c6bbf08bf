"""The encoder-only limit: what any method must spend to see every image once.

    python benchmarks/encoder_limit.py --config CFG --checkpoint CKPT --image-size PX \
        --images FILE [FILE ...] [--batch-size B] [--out JSON]

A fresh process that starts Python, imports torch/sam2, builds the same SAM2
model from the same checkpoint at the same input size, reads and letterboxes
each image (the template and every target) and runs the frozen image encoder
(Hiera trunk + FPN neck, ``sam.image_encoder``) once on each, under
``torch.no_grad``, in the precision sam2pal uses on that device (fp32 on CPU,
bf16 autocast on CUDA). Nothing else: no memory attention, no mask
decoding, no output. Timing marks are written as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

T0 = time.time()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--images", nargs="+", required=True)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    import torch
    from descriptron_sam2pal.engine.preprocess import prepare_image
    from descriptron_sam2pal.model.build import build_model
    t_import = time.time()

    loaded = build_model(args.config, args.checkpoint, device=args.device, image_size=args.image_size)
    sam = loaded.sam
    t_model = time.time()

    encode_s = 0.0
    read_s = 0.0
    n = 0
    with torch.no_grad():
        for start in range(0, len(args.images), args.batch_size):
            t = time.time()
            batch = torch.stack([prepare_image(p, args.image_size).tensor()
                                 for p in args.images[start:start + args.batch_size]]).to(loaded.device)
            t1 = time.time()
            with (
                loaded.autocast()
            ):  # the precision sam2pal uses there (auto: bf16 on CUDA and native-bf16 CPUs)
                out = sam.image_encoder(batch)
            _ = [lv.sum().item() for lv in out["backbone_fpn"]]  # force completion (CUDA)
            t2 = time.time()
            read_s += t1 - t
            encode_s += t2 - t1
            n += batch.shape[0]
    t_end = time.time()
    result = {"images": n, "image_size": loaded.image_size, "batch_size": args.batch_size,
              "threads": torch.get_num_threads(), "device": str(loaded.device),
              "import_s": t_import - T0, "model_s": t_model - t_import, "read_s": read_s,
              "encode_s": encode_s, "per_image_encode_s": encode_s / max(n, 1),
              "total_s": t_end - T0}
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
