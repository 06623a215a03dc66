#!/usr/bin/env bash
# Run by Snakemake inside the freshly created envs/lumos.yaml environment (once, with `--sdm conda`):
# installs the lumos package (and its `lumos` CLI, which every rule runs) from this checkout.
# The dependencies are already in envs/lumos.yaml, hence --no-deps. Editable, so that the
# environment runs the checkout's current code: Snakemake rebuilds the environment only when
# envs/lumos.yaml or this script change, not when lumos/ does.
#
# Finding the checkout. Snakemake (9.x, snakemake/deployment/conda.py, Env.create and
# Env.execute_deployment_script) does not run this file where it lies: it copies it next to the
# environment, to <conda-prefix>/<hash>.post-deploy.sh (by default .snakemake/conda/ in the working
# directory, elsewhere with --conda-prefix), then runs `source activate <env>; bash <that copy>` with
# the working directory of Snakemake as the current directory, and sets no variable that names the
# workflow. So the script's own location says nothing about the checkout; it uses, in order:
#   1. $LUMOS_ROOT, when set (the checkout's path: for a working directory (--directory) outside it);
#   2. the current directory, i.e. Snakemake's working directory: the checkout whenever Snakemake
#      is started from it, as the README does (results/ are written there too).
# Either must hold this repository (pyproject.toml naming the project lumos, lumos/__init__.py);
# otherwise the script fails and Snakemake removes the half-made environment.
set -euo pipefail

root=${LUMOS_ROOT:-$PWD}
if ! { [ -f "$root/lumos/__init__.py" ] && grep -Eq '^name = "lumos"' "$root/pyproject.toml" 2>/dev/null; }; then
    echo "lumos.post-deploy.sh: '$root' is not the lumos checkout: run Snakemake from the" \
        "checkout, or set LUMOS_ROOT to its path" >&2
    exit 1
fi
root=$(cd "$root" && pwd -P)

python -m pip install --no-deps --editable "$root"
python -c "import lumos, av; print('lumos', lumos.__version__, 'installed from', '$root')"
test -x "$CONDA_PREFIX/bin/lumos"   # the CLI the rules run, in this environment
