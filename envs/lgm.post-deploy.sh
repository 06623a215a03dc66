#!/usr/bin/env bash
# Run by Snakemake inside the freshly created envs/lgm.yaml environment (once): compiles LGM's
# Gaussian rasteriser, github ashawkey/diff-gaussian-rasterization (with depth and alpha output),
# pinned to a commit, against the environment's torch and CUDA 12.1 compiler. Untested here (no
# CUDA 12.1 compiler on the development machine).
#
# TORCH_CUDA_ARCH_LIST: the GPU generations the kernels are compiled for (A100: 8.0, A10/RTX 30:
# 8.6, H100/H200: 9.0); set it before running Snakemake to build for others. It is needed because
# the build may run where no GPU is visible.
set -euo pipefail

RASTERISER=https://github.com/ashawkey/diff-gaussian-rasterization
COMMIT=8829d14f814fccdaf840b7b0f3021a616583c0a1   # 2024-07: LGM's fork, with the GCC 13 header fix

export CUDA_HOME="$CONDA_PREFIX"
export CC="$CONDA_PREFIX/bin/x86_64-conda-linux-gnu-gcc" CXX="$CONDA_PREFIX/bin/x86_64-conda-linux-gnu-g++"
export CPATH="$CONDA_PREFIX/targets/x86_64-linux/include${CPATH:+:$CPATH}"
export LIBRARY_PATH="$CONDA_PREFIX/targets/x86_64-linux/lib:$CONDA_PREFIX/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;8.6;9.0}"

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git clone --quiet "$RASTERISER" "$src/rasteriser"
git -C "$src/rasteriser" checkout --quiet "$COMMIT"
git -C "$src/rasteriser" submodule update --quiet --init --recursive   # glm, header-only
# --no-build-isolation: setup.py imports the environment's torch
python -m pip install --no-build-isolation --no-deps "$src/rasteriser"
python -c "import diff_gaussian_rasterization; print('diff_gaussian_rasterization built')"
