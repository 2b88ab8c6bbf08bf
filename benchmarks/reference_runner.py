"""Run the reference SAM2-PAL script unchanged, at a given model input size, with timing probes.

Usage (what benchmarks/run.py does):
    python benchmarks/reference_runner.py --script .../sam2_pal_batch_v21.py \
        --image-size 512 --probe OUT.json -- <the reference's own flags>

What this wrapper does, and nothing else:
1. If the real ``torchvision`` cannot be imported, puts ``benchmarks/reference_shim``
   on ``sys.path`` (see reference_shim/torchvision/__init__.py for why and what).
2. The reference has no flag for the model's input size: it builds SAM2 with
   ``sam2.build_sam.build_sam2`` / ``build_sam2_video_predictor`` from the
   config's ``image_size`` (1024 for the SAM 2.1 configs). To run it at the same
   size as ours, both builders get the hydra override ``++model.image_size=PX``
   (the same change ``sam2pal --image-size PX`` makes to the config before
   instantiation). With ``--image-size 0`` nothing is overridden. sam2's
   ``SAM2ImagePredictor`` (the reference's single-image fallback when the tracker
   returns nothing) hard-codes the backbone feature sizes of a 1024-px model
   (``_bb_feat_sizes``) and fails at any other size after its encoder pass; with an
   override they are set from the model's size (the same sizes at 1024).
3. Probes that only observe: wall-clock marks when the model is built, when
   training starts / each palindrome forward starts / training ends, when
   propagation starts / ends, and the number of images sent through the image
   encoder (``SAM2Base.forward_image``). Written as JSON to ``--probe`` at exit.
Then the script runs as ``__main__`` with the given arguments, exactly as
``python sam2_pal_batch_v21.py <flags>`` would.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import runpy
import sys
import time

T0 = time.time()
HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit("usage: reference_runner.py --script PATH [--image-size PX] [--probe JSON] -- FLAGS")
    split = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--script", required=True)
    parser.add_argument("--image-size", type=int, default=0)
    parser.add_argument("--probe", default=None)
    parser.add_argument(
        "--config-dir",
        default=None,
        help="a folder of SAM2 config yamls for hydra (replaces sam2's own search path; "
        "only for a config that is not part of the sam2 package)",
    )
    opts = parser.parse_args(argv[:split])
    ref_args = argv[split + 1 :]

    probe: dict = {
        "t_process_start": T0,
        "image_size_override": opts.image_size or None,
        "encoder_images": 0,
        "forward_image_calls": 0,
        "occcl_calls": [],
        "occcl_failed": 0,
        "torchvision": None,
    }

    try:
        import torchvision

        probe["torchvision"] = f"real {torchvision.__version__}"
    except Exception as exc:  # noqa: BLE001 - CUDA torchvision beside CPU torch, or absent
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.path.insert(0, os.path.join(HERE, "reference_shim"))
        import torchvision

        assert getattr(torchvision, "SHIM", False)
        probe["torchvision"] = (
            f"benchmark shim (real torchvision unusable: {type(exc).__name__}: {str(exc)[:120]})"
        )

    import sam2.build_sam as build_sam

    if opts.config_dir:
        from hydra import initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
        initialize_config_dir(config_dir=os.path.abspath(opts.config_dir), version_base="1.2")
    from sam2.modeling.sam2_base import SAM2Base

    if opts.image_size:
        override = f"++model.image_size={int(opts.image_size)}"

        def _with_size(fn):
            def wrapped(*args, **kwargs):
                extra = list(kwargs.pop("hydra_overrides_extra", None) or [])
                kwargs["hydra_overrides_extra"] = extra + [override]
                out = fn(*args, **kwargs)
                probe.setdefault("t_models_built", []).append(time.time())
                return out

            return wrapped

        build_sam.build_sam2 = _with_size(build_sam.build_sam2)
        build_sam.build_sam2_video_predictor = _with_size(build_sam.build_sam2_video_predictor)

        from sam2.sam2_image_predictor import SAM2ImagePredictor

        orig_init = SAM2ImagePredictor.__init__

        def init_at_model_size(self, sam_model, *args, **kwargs):
            orig_init(self, sam_model, *args, **kwargs)
            side = int(sam_model.image_size)
            self._bb_feat_sizes = [(side // 4, side // 4), (side // 8, side // 8), (side // 16, side // 16)]

        SAM2ImagePredictor.__init__ = init_at_model_size

    orig_forward_image = SAM2Base.forward_image

    def forward_image(self, img_batch):
        probe["forward_image_calls"] += 1
        probe["encoder_images"] += int(img_batch.shape[0])
        return orig_forward_image(self, img_batch)

    SAM2Base.forward_image = forward_image

    def write_probe() -> None:
        probe["t_exit"] = time.time()
        if opts.probe:
            with open(opts.probe, "w") as fh:
                json.dump(probe, fh)

    atexit.register(write_probe)

    # Execute the script's body under another name (so its `if __name__ ==
    # "__main__"` block does not fire), add the probes to its SAM2PAL class, then
    # call its main() with the reference's own argv.
    script = os.path.abspath(opts.script)
    sys.argv = [script] + ref_args
    namespace = runpy.run_path(script, run_name="sam2_pal_reference")
    SAM2PAL = namespace["SAM2PAL"]

    def probe_method(name, key_start, key_end):
        orig = getattr(SAM2PAL, name)

        def wrapped(self, *a, **k):
            probe.setdefault(key_start, []).append(time.time())
            try:
                return orig(self, *a, **k)
            finally:
                probe.setdefault(key_end, []).append(time.time())

        setattr(SAM2PAL, name, wrapped)

    probe_method("finetune_pal", "t_train_start", "t_train_end")
    probe_method("process_batch", "t_propagate_start", "t_propagate_end")

    orig_occcl = SAM2PAL._occcl_forward

    def occcl(self, *a, **k):
        probe["occcl_calls"].append(time.time())
        try:
            out = orig_occcl(self, *a, **k)
        except BaseException:
            probe["occcl_failed"] += 1
            raise
        if out is None:
            probe["occcl_failed"] += 1
        return out

    SAM2PAL._occcl_forward = occcl
    # main() looks SAM2PAL up in its own module globals, which is `namespace`'s
    # origin dict; the class object is shared, so the patched methods are seen.
    namespace["main"]()


if __name__ == "__main__":
    main()
