"""Save a randomly initialised SAM2 checkpoint once (``{"model": state_dict}``, Meta's format).

    python benchmarks/make_checkpoint.py --config configs/sam2.1/sam2.1_hiera_t.yaml --out CKPT [--seed 0]

Weights do not change the cost of a forward or backward pass, so the benchmark
uses random weights instead of Meta's download (which no package ships).
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch
    from descriptron_sam2pal.model.build import build_model

    loaded = build_model(args.config, None, device="cpu", seed=args.seed)
    tmp = args.out + ".part"
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save({"model": loaded.sam.state_dict()}, tmp)
    os.replace(tmp, args.out)
    n = sum(p.numel() for p in loaded.sam.parameters())
    print(f"saved {args.out}: {loaded.config_name}, {n / 1e6:.2f}M parameters, seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
