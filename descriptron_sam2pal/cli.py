"""The ``sam2pal`` command: train / propagate / evaluate / download / gui.

One engine, two faces: every command calls the same engine functions as the
GUI, with a tqdm bar instead of a progress dialog. Errors the user can act on
(``UserError``) are printed without a traceback and exit non-zero.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path

from descriptron_sam2pal import UserError, __version__

EXAMPLES = """\
examples:
  # fine-tune SAM2 on your specimens from the structures outlined on the templates
  sam2pal train --templates project/annotations.json --images specimens/ \\
      --checkpoint sam2.1_hiera_tiny.pt --out runs/weevils

  # segment every specimen with the fine-tuned model, then merge into Descriptron's store
  sam2pal propagate --templates project/annotations.json --images specimens/ \\
      --checkpoint sam2.1_hiera_tiny.pt --adapter runs/weevils --out predictions.json

  # how good is it? (against masks you trust)
  sam2pal evaluate --pred predictions.json --truth truth_masks/ --colors "head=200,0,0;eye=0,200,0"
"""


# -- argument helpers ------------------------------------------------------------

def _image_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of pixels") from None
    if value < 64 or value % 32:
        lower, upper = max(64, value - value % 32), max(64, value - value % 32 + 32)
        raise argparse.ArgumentTypeError(
            f"{value} is not supported: SAM2 needs a multiple of 32, at least 64 "
            f"(e.g. {lower} or {upper})")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--checkpoint", metavar="CKPT",
                   help="SAM2 / SAM2.1 checkpoint (.pt). Default: the one Descriptron uses "
                        "($DESCRIPTRON_SAM2_CHECKPOINT, ../checkpoints/, ~/.cache/descriptron/sam2/)")
    g.add_argument("--config", metavar="NAME",
                   help="SAM2 config (e.g. sam2.1_hiera_t); normally chosen from the checkpoint")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to run (default: auto = a GPU if there is one)")
    g.add_argument("--image-size", type=_image_size, metavar="PX",
                   help="model input size in pixels, a multiple of 32 (default: the model's, "
                        "usually 1024; smaller is faster and coarser)")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="arithmetic: auto = bf16 on a GPU and on CPUs with native bf16 "
                        "(AVX512-BF16/AMX: faster, masks that agree with fp32's), fp32 on other "
                        "CPUs; training too (bf16 training measured within seed noise of fp32 on the "
                        "quality test-bed)")


def _add_template_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("templates (the specimens you outlined)")
    g.add_argument("--templates", action="append", metavar="STORE", default=[],
                   help="Descriptron annotations: a .json/.rlejson file or a folder of images with "
                        "their _final_ files; every annotated image is a template. Repeat for more")
    g.add_argument("--template-image", action="append", metavar="IMG", default=[],
                   help="a template image whose structures are given as a mask PNG (--template-mask)")
    g.add_argument("--template-mask", action="append", metavar="MASK.png", default=[],
                   help="the mask PNG of the matching --template-image: binary (one structure, "
                        "named by --structure) or colour (structures named by --colors)")
    g.add_argument("--structure", metavar="NAME", help="name of the structure in a binary mask")
    g.add_argument("--colors", metavar='"name=R,G,B;..."',
                   help='colour of each structure in colour mask PNGs, e.g. "head=200,0,0;eye=0,200,0"')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sam2pal",
        description=("SAM2-PAL for Descriptron: outline structures on a template specimen, "
                     "fine-tune SAM2 on your unlabeled specimens, and segment them all."),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"sam2pal {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show more detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="fine-tune SAM2 with palindrome self-training",
                       description="Fine-tune SAM2 on your specimens: the templates' structures are the "
                                   "only labels; the other images teach the model by palindrome "
                                   "cycle-consistency. Writes RUN_DIR/adapter.pt, settings.json, log.jsonl.")
    _add_template_args(t)
    t.add_argument("--images", required=True, metavar="DIR",
                   help="folder of unlabeled specimen images (templates in it are skipped)")
    t.add_argument("--out", required=True, metavar="RUN_DIR", help="folder for the trained adapter and logs")
    _add_model_args(t)
    g = t.add_argument_group("training")
    g.add_argument("--steps", type=_positive, default=300, help="training steps (default 300)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--lora-rank", type=_positive, default=8, metavar="R",
                      help="train small LoRA adapters of this rank (default 8)")
    mode.add_argument("--full", action="store_true",
                      help="train the memory and decoder weights themselves instead of LoRA adapters")
    g.add_argument("--lr", type=float, help="learning rate (default: 5e-4 for LoRA, 1e-5 for --full)")
    g.add_argument("--seed", type=int, default=0, help="random seed, for a reproducible run (default 0)")
    g.add_argument("--no-pseudo-labels", action="store_true",
                   help="train on the palindromes alone, without also learning from the model's best-scored "
                        "masks on the unlabeled images (on by default)")
    g.add_argument("--stop-after", type=int, default=None, metavar="N",
                   help="stop when N validations in a row (every 25 steps) do not beat the best one, whose "
                        "weights are kept either way (default: off, 0, train every step)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in RUN_DIR")
    t.add_argument("--overwrite", action="store_true",
                   help="allow replacing files in RUN_DIR that sam2pal did not write (settings.json, "
                        "result.json, ...); without it such a folder is refused before any work")
    g.add_argument("--cache-dir", metavar="DIR",
                   help="keep image-encoder features on disk here: needed when the unlabeled images "
                        "do not fit in memory, and reruns skip the encoder")
    t.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "propagate",
        help="segment every specimen from the templates",
        description="Segment the templates' structures on every image of DIR and score "
        "each result (review score, 0..1, an estimate of its IoU: low = check it).",
    )
    _add_template_args(p)
    p.add_argument("--images", required=True, metavar="DIR", help="folder of specimen images to segment")
    p.add_argument("--out", required=True, metavar="PRED.json",
                   help="COCO file of predictions to write (a new file, or one an earlier run wrote)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow --out to replace a file that sam2pal did not write (never one of the inputs)")
    p.add_argument(
        "--adapter", metavar="RUN_DIR", help="a trained run (or its adapter.pt); default: base SAM2"
    )
    _add_model_args(p)
    g = p.add_argument_group("propagation")
    g.add_argument("--batch-size", type=_positive, default=None,
                   help="images per batch (default: 1 on the CPU, where it is fastest; 4 on a GPU)")
    g.add_argument("--orientation-search", action="store_true",
                   help="try the 8 rotations/mirrorings of each specimen and keep the most confident")
    g.add_argument("--confidence", action="store_true",
                   help="also compute each result's palindrome confidence (the templates predicted back from "
                        "it; it takes longer; the review score does not need it; always on with "
                        "--orientation-search)")
    g.add_argument("--no-confidence", action="store_true", help=argparse.SUPPRESS)  # the default now
    g.add_argument("--write-to", metavar="STORE",
                   help="also merge the predictions into this Descriptron store (nothing is overwritten)")
    g.add_argument("--resume", action="store_true",
                   help="reuse results of an interrupted run with the same settings")
    c = p.add_argument_group("cluster (docs/cluster.md; needs pip install \"descriptron-sam2pal[ray]\")")
    c.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                   help="spread the images over a Ray cluster: without ADDRESS the one of $RAY_ADDRESS or "
                        "`ray start` on this machine, else a new one on this machine; or HOST:6379, "
                        "ray://HOST:10001. Writes the same files as a run without --ray")
    c.add_argument("--workers", type=_positive, metavar="N",
                   help="with --ray: model copies working at once (default: one per GPU; "
                        "without GPUs one per 4 CPUs); --batch-size is per worker")
    c.add_argument("--ship-images", action="store_true",
                   help="with --ray: send each image to its worker (when the workers cannot read "
                        "the paths of this machine; default: they read them from shared storage)")
    p.set_defaults(func=cmd_propagate)

    e = sub.add_parser(
        "evaluate",
        help="IoU of predictions against ground truth",
        description="Per-structure IoU and mean IoU of predictions against ground truth "
        "(a COCO file, or a folder of colour/indexed mask PNGs named like the images).",
    )
    e.add_argument("--pred", required=True, metavar="PRED.json", help="predictions (sam2pal propagate --out)")
    e.add_argument("--truth", required=True, metavar="COCO.json|MASK_DIR", help="ground truth")
    e.add_argument("--colors", metavar='"name=R,G,B;..."', help="structure colours of mask PNGs")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("download", help="download a SAM2 checkpoint from Meta into Descriptron's cache")
    d.add_argument("name", nargs="?", default="sam2.1_hiera_tiny.pt",
                   help="checkpoint file name, e.g. sam2.1_hiera_large.pt (default sam2.1_hiera_tiny.pt)")
    d.add_argument("--dest", metavar="DIR", help="folder (default: Descriptron's cache)")
    d.add_argument("--url", help="download from this address instead of Meta's")
    d.set_defaults(func=cmd_download)

    ui = sub.add_parser("gui", help="open the Descriptron workspace with the SAM2-PAL plugin")
    ui.add_argument("project", nargs="?", help="a folder of specimen images or a Descriptron annotation file")
    ui.add_argument("--no-plugins", action="store_true", help="start without plugins")
    ui.set_defaults(func=cmd_gui)
    return parser


# -- commands ---------------------------------------------------------------------

def cmd_gui(args) -> int:
    import os

    if (sys.platform.startswith("linux") and not os.environ.get("QT_QPA_PLATFORM")
            and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))):
        raise UserError("there is no screen to show the workspace on (DISPLAY is not set). On a server, "
                        "use `sam2pal train` and `sam2pal propagate`, then review on a desktop; or log "
                        "in with `ssh -X`")
    from descriptron_sam2pal.app.launch import run

    return run(args.project, plugins=not args.no_plugins)


def cmd_download(args) -> int:
    from descriptron_sam2pal.jobs.checkpoint_download import DownloadRequest, download_run

    with _Bar("download", unit="B") as bar:
        path = download_run(DownloadRequest(args.name, dest_dir=args.dest, url=args.url), progress=bar.update)
    print(f"saved {path}")
    return 0


def cmd_train(args) -> int:
    from descriptron_sam2pal.jobs.specimens import specimen_images
    from descriptron_sam2pal.jobs.templates import structure_names
    from descriptron_sam2pal.jobs.training import TrainRequest, describe_result, train_config, train_run

    specs = _template_specs(args)
    config = train_config(
        steps=args.steps,
        lora_rank=args.lora_rank,
        full=args.full,
        seed=args.seed,
        lr=args.lr,
        pseudo_labels=not args.no_pseudo_labels,
        stop_after=args.stop_after,
    )
    request = TrainRequest(
        _model_request(args),
        specs,
        specimen_images(args.images, exclude=[s.path for s in specs]),
        Path(args.out),
        config,
        resume=args.resume,
        cache_dir=args.cache_dir,
        overwrite=args.overwrite,
    )
    print(f"training on {len(specs)} template(s) ({', '.join(structure_names(specs))}) "
          f"and {len(request.unlabeled)} unlabeled image(s), {args.steps} steps, "
          f"{'full fine-tuning' if args.full else f'LoRA rank {args.lora_rank}'}"
          f"{'' if args.no_pseudo_labels else ', with pseudo-labels'}")
    with _Bar("train", unit="step") as bar:
        outcome = train_run(request, progress=bar.update, log_fn=lambda text: print(text, file=sys.stderr))
    for line in describe_result(outcome.result):
        print(line)
    return 0


def cmd_propagate(args) -> int:
    from descriptron_sam2pal.jobs.cluster import ClusterSettings
    from descriptron_sam2pal.jobs.propagation import PropagateRequest, propagate_run
    from descriptron_sam2pal.jobs.specimens import specimen_images
    from descriptron_sam2pal.jobs.templates import structure_names

    specs = _template_specs(args)
    targets = specimen_images(args.images, exclude=[s.path for s in specs])
    request = PropagateRequest(
        _model_request(args), specs, targets, out=Path(args.out), write_to=args.write_to,
        batch_size=args.batch_size, orientation_search=args.orientation_search,
        confidence=args.confidence and not args.no_confidence, resume=args.resume, overwrite=args.overwrite,
        protected={"--templates": args.templates, "--template-mask": args.template_mask},
        status_stores=args.templates,
        cluster=ClusterSettings(args.ray, args.workers, args.ship_images) if args.ray else None)
    if (args.workers or args.ship_images) and not args.ray:
        raise UserError("--workers and --ship-images are for a Ray cluster; add --ray")
    print(f"segmenting {', '.join(structure_names(specs))} on {len(targets)} image(s) "
          f"from {len(specs)} template(s)")
    with _Bar("propagate", unit="img") as bar:
        outcome = propagate_run(
            request, progress=bar.update, log_fn=lambda text: print(text, file=sys.stderr)
        )
    if outcome.encoder_passes is not None:
        print(f"image encoder passes: {outcome.encoder_passes} "
              f"(templates and {len(targets)} image(s); each image once)")
    for r in outcome.failed:
        print(f"skipped {r.path}: {r.error}", file=sys.stderr)
    print(f"wrote {', '.join(str(p) for p in outcome.written)}")
    if outcome.merged is not None:
        print(outcome.merged)
    return 1 if outcome.failed and len(outcome.failed) == len(targets) else 0


def cmd_evaluate(args) -> int:
    import json

    from descriptron_sam2pal.jobs.evaluation import EvaluateRequest, evaluate_run

    store_log = logging.getLogger("descriptron_sam2pal.store")
    level = store_log.level
    if not args.verbose:  # the images themselves are not needed to score masks
        store_log.setLevel(logging.ERROR)
    try:
        report = evaluate_run(EvaluateRequest(args.pred, args.truth, colors=args.colors))
    finally:
        store_log.setLevel(level)  # not left changed for whoever runs next in this process
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0


# -- shared pieces ------------------------------------------------------------------

def _model_request(args):
    from descriptron_sam2pal.jobs.models import ModelRequest

    return ModelRequest(choice=args.checkpoint, device=args.device, image_size=args.image_size,
                        adapter=getattr(args, "adapter", None), precision=args.precision, config=args.config)


def _template_specs(args):
    from descriptron_sam2pal.jobs.templates import template_specs

    return template_specs(args.templates, args.template_image, args.template_mask,
                          structure=args.structure, colors=args.colors)


class _Bar:
    """A tqdm bar fed by engine Progress reports; a new stage starts a new bar."""

    STAGE_NAMES = {"load": "reading images", "train": "training", "propagate": "segmenting"}

    def __init__(self, desc: str, unit: str) -> None:
        self.desc, self.unit, self.bar, self.stage = desc, unit, None, None
        self.last = None  # the latest Progress report

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()

    def _ensure(self, stage, total, start=0):
        from tqdm import tqdm

        if self.bar is not None and stage == self.stage:
            if total and self.bar.total != total:
                self.bar.total = total
            return
        if self.bar is not None:
            self.bar.close()
        self.stage = stage
        unit = {"load": "img", "train": "step", "propagate": "img"}.get(stage, self.unit)
        self.bar = tqdm(total=total, desc=self.STAGE_NAMES.get(stage, self.desc), unit=unit,
                        unit_scale=unit == "B", initial=start, dynamic_ncols=True, file=sys.stderr)

    def update(self, progress) -> None:
        self.last = progress
        # Work done before this call (resumed steps, journaled images, resumed bytes) is the
        # bar's starting point, not speed: it would make the rate meaningless. A total of 0 is unknown.
        self._ensure(progress.stage, progress.total or None, start=progress.done)
        self.bar.update(max(0, progress.done - self.bar.n))
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in progress.metrics.items()
                 if k in ("loss", "val", "lr")}
        if shown:
            self.bar.set_postfix(shown, refresh=False)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"sam2pal: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or args.verbose:
            raise
        # a full disk outside the checked writes: one line, and how to go on
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"sam2pal: error: {exc.strerror or exc}{where}. Free disk space, then run the same command "
              "again (with --resume for train and propagate: finished work is not redone)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sam2pal: interrupted; run again with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
