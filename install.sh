#!/usr/bin/env bash
# Install descriptron-sam2pal into ./.venv (CPU torch, SAM2 without torchvision).
# Usage: bash install.sh            (re-running is safe and fast)
# Env:   VENV=path   PYTHON=python3.11   TORCH_SPEC="torch==2.13.0"
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
SAM2_SPEC=${SAM2_SPEC:-sam2==1.1.0}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade "setuptools>=61" wheel
# torch first: the sam2 sdist compiles against it (no build isolation).
"$VENV/bin/python" -c "import torch" 2>/dev/null || "${PIP[@]}" install "$TORCH_SPEC"
"${PIP[@]}" install -e ".[test]"
# SAM2 from PyPI without its torchvision pin (which would pull a CUDA torch).
"$VENV/bin/python" -c "import sam2.build_sam" 2>/dev/null || \
  SAM2_BUILD_CUDA=0 "${PIP[@]}" install --no-build-isolation --no-deps "$SAM2_SPEC"
# Descriptron itself, for tests/descriptron (they run its own load/save functions). --no-deps:
# its descriptron-vision dependency pins torch<2.11 + torchvision (a CUDA torch, GBs) and
# descriptron-core pulls pandas/scikit-learn/umap...; the functions we run need only
# numpy, OpenCV and PIL, which are already here.
"$VENV/bin/python" -c "import importlib.util as u; assert u.find_spec('descriptron_gui')" 2>/dev/null || \
  "${PIP[@]}" install --no-deps "descriptron-gui==2.8.2"
"$VENV/bin/python" -c "import sam2.build_sam, torch, descriptron_sam2pal; print('descriptron-sam2pal installed in $VENV (torch', torch.__version__ + ')')"
