"""Benchmark-only stand-in for torchvision (NOT the real package).

The reference script (descriptron-vision 2.8.2, tools/sam2_pal_batch_v21.py)
imports ``sam2.sam2_image_predictor`` and builds a ``SAM2ImagePredictor`` in
its constructor; ``sam2.utils.transforms`` then imports
``torchvision.transforms.{Normalize, Resize, ToTensor}``. The PyPI torchvision
wheels are CUDA builds that do not import beside the CPU torch this project
uses (``operator torchvision::nms does not exist``), so the benchmark puts this
directory on the reference subprocess's ``sys.path`` *only when the real
torchvision cannot be imported*.

In the benchmarked workloads (propagation with ``--cycle_consistency`` and
``--pal_finetuning``) the image predictor is constructed but its transforms
are never applied: propagation goes through the video predictor and training
through ``forward_image``/``track_step``. The classes below are nevertheless
faithful (bilinear antialiased resize, mean/std normalisation, HWC uint8 ->
CHW float in [0, 1]) so the reference's single-image fallback would still
compute the same thing if it were reached; ``benchmarks/run.py`` counts the
calls and reports them.
"""

__version__ = "0.0.0+sam2pal-benchmark-shim"
SHIM = True
