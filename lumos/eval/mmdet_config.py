"""Find the Mask2Former config and weights that GenEval's ``evaluate_images.py`` loads.

Runs *inside the GenEval conda env* (envs/geneval.yaml, python 3.9, no lumos installed), by path,
so it uses the standard library only::

    python lumos/eval/mmdet_config.py --weights <detector folder>    # prints the config's path

Without ``--model-config``, ``evaluate_images.py`` looks for the config at
``<mmdet package>/../configs/mask2former/``, which exists only beside a source checkout of
mmdetection (GenEval's README installs mmdetection's 2.x branch with ``pip install -e``). The
PyPI mmdet 2.x wheel that the env installs keeps its configs inside the package, under
``mmdet/.mim/configs/``. This script finds the config in either place, checks that the detector
weights are where ``--model-path`` will point, and fails naming what is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

# GenEval's detector: evaluate_images.py's default `model` option and download_models.sh's file name
DETECTOR = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco"


def mmdet_config(name: str = DETECTOR) -> Path:
    """The installed mmdet's config file `mask2former/<name>.py` (found without importing mmdet,
    which would load mmcv's CUDA ops)."""
    spec = importlib.util.find_spec("mmdet")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("mmdet is not installed in this environment: envs/geneval.yaml installs it "
                                "(snakemake --sdm conda builds that env)")
    package = Path(spec.origin).parent
    places = [package / ".mim" / "configs",  # the PyPI wheel
              package.parent / "configs"]  # a source checkout (pip install -e)
    for folder in places:
        config = folder / "mask2former" / f"{name}.py"
        if config.is_file():
            return config
    raise FileNotFoundError(f"no mask2former/{name}.py under {' or '.join(map(str, places))}: "
                            "this mmdet does not ship GenEval's detector config (mmdet 2.x does)")


def detector_weights(folder: str, name: str = DETECTOR) -> Path:
    """The detector checkpoint `<folder>/<name>.pth` that evaluate_images.py loads."""
    weights = Path(folder) / f"{name}.pth"
    if not weights.is_file():
        raise FileNotFoundError(f"GenEval's detector weights {weights} not found: run GenEval's "
                                f"evaluation/download_models.sh {folder} (or set config key "
                                "t2i.eval.official.geneval_detector to the folder holding them)")
    return weights


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="folder of the detector weights (--model-path)")
    parser.add_argument("--name", default=DETECTOR, help="detector name (default: GenEval's)")
    args = parser.parse_args(argv)
    try:
        detector_weights(args.weights, args.name)
        print(mmdet_config(args.name))
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
