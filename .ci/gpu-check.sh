#!/usr/bin/env bash
# The gpu preset's device check (issue 18) on one H100/H200 with 16 CPU cores, in two parts that
# together fit 15 minutes of device time (a machine start ~1.5 min + each part's hard limit):
#
#   bash .ci/gpu-check.sh table1   # [< 10 min] Table 1 of config/gpu.yaml (stopped at 500 s) with
#                                  #   the class prior beside it, its class-grid shape scores, the
#                                  #   VAE ceiling, wall times, FIDs
#   bash .ci/gpu-check.sh bench    # [< 3.5 min] lumos bench --gpu --variants: DiT-XL/2 (I2I,
#                                  #   cross-attention) and the gpu preset's DiT-T/2
#
# What it writes goes to $OUT (the device tool's folder that comes back), else results/gpu-check:
# summary.txt (wall time, FIDs, shape scores, training images/s), table1.md, table1_samples.png,
# class_grid.png, snakemake.log, logs.tgz (every rule's log, loss curves, summaries), bench.txt.
#
# Python: the machine's python3 with torch. Packages it lacks travel as wheels in .whl/ (ignored
# by git: `echo /.whl/ >> .git/info/exclude`), fetched beforehand on a machine with PyPI by
#   bash .ci/gpu-check.sh wheels
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu-check}
mkdir -p "$OUT"
# To check this script itself on a CPU: LUMOS_CHECK_DEVICE=cpu and, in LUMOS_CHECK_CONFIGS, a
# config file that cuts the sizes and steps down (tests/test_gpu_preset.py's CUT_DOWN).
DEVICE=${LUMOS_CHECK_DEVICE:-cuda}
CONFIGS="config/gpu.yaml ${LUMOS_CHECK_CONFIGS:-}"
CFG="{\"preset\": \"gpu\", \"device\": \"$DEVICE\"}"  # the hand-run diagnostics read the gpu preset

# The lumos dependencies the CUDA image (KINDS.md's package list) does not hold, with what they need.
WHEELS="annotated-types==0.8.0 argparse-dataclass==2.0.0 braceexpand==0.1.7 clean-fid==0.1.35
conda-inject==1.3.2 configargparse==1.9.0 connection-pool==0.0.3 diffusers==0.42.1 docutils==0.22.4
dpath==2.2.0 fastjsonschema==2.22.3 gitdb==4.0.12 gitpython==3.2.1 greenlet==3.5.6 humanfriendly==10.0
immutables==0.21 importlib-metadata==10.2.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
jupyter-core==5.9.1 lazy-importer==0.1.0 lpips==0.1.4 nbformat==5.11.1 platformdirs==4.14.8 pulp==3.3.2
pydantic==2.14.4 pydantic-core==2.50.5 referencing==0.37.0 rpds-py==2026.9.1 smart-open==7.7.1 smmap==5.0.3
snakemake==9.27.1 snakemake-interface-common==1.23.0 snakemake-interface-executor-plugins==9.4.0
snakemake-interface-logger-plugins==2.1.0 snakemake-interface-report-plugins==1.3.0
snakemake-interface-scheduler-plugins==2.0.2 snakemake-interface-storage-plugins==4.4.1 sqlalchemy==2.0.58
sqlmodel==0.0.37 tenacity==9.2.1 throttler==1.2.3 traitlets==5.16.1 typing-inspection==0.4.5 webdataset==1.0.2
yte==1.9.4"

wheels() {  # on a machine with PyPI: the wheels for the device's Python 3.12 into .whl/ (a package
    # published as source only is built into a wheel here: all of those are pure Python)
    local pkg
    for pkg in $WHEELS; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "$pkg" || python3 -m pip wheel -q --no-deps -w .whl "$pkg" || echo "no wheel for $pkg" >&2
    done
    du -sh .whl
}

setup() {  # the wheels onto PYTHONPATH (once per machine), and a `lumos` command for the rules
    if [ -d .whl ] && [ ! -f /tmp/site/.installed ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl && touch /tmp/site/.installed || exit 1
    fi
    export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
    mkdir -p /tmp/lumos-bin
    printf '#!/bin/sh\nexec python3 -m lumos "$@"\n' >/tmp/lumos-bin/lumos
    chmod +x /tmp/lumos-bin/lumos
    export PATH="/tmp/lumos-bin:$PATH" PYTHONUNBUFFERED=1 LUMOS_NO_PROGRESS=1 HF_HUB_OFFLINE=1
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/summary.txt"
    fi
    python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/summary.txt"
}

table1() {
    local t0 rc
    t0=$(date +%s)
    # Table 1 and the class-to-image prior (Figure 8's, for class-grid) side by side
    # shellcheck disable=SC2086  # CONFIGS is a list of files
    timeout 500 python3 -m snakemake results/table1.csv results/pretrain/class_i2i/model \
        --configfile $CONFIGS --config device="$DEVICE" --cores 16 >"$OUT/snakemake.log" 2>&1
    rc=$?
    {
        echo "snakemake exit $rc after $(($(date +%s) - t0)) s (124: stopped at 500 s)"
        [ -f results/table1.csv ] && echo "Table 1 written $(($(stat -c %Y results/table1.csv) - t0)) s after the start" \
            "(negative: built by an earlier run)"
        for f in results/pretrain/*/train_summary.json; do [ -f "$f" ] && echo "$f: $(cat "$f" | tr -d '\n ')"; done
        [ -f results/table1.csv ] && cat results/table1.csv
    } | tee -a "$OUT/summary.txt"
    if [ -d results/pretrain/class_i2i/model ]; then
        timeout 30 lumos class-grid --cfg "$CFG" --model results/pretrain/class_i2i/model --out "$OUT/class_grid.png" \
            2>>"$OUT/snakemake.log" | tee -a "$OUT/summary.txt" ||
            echo "class-grid exit $? (124: stopped at 30 s)" | tee -a "$OUT/summary.txt"
    fi
    if [ -d results/data/imagenet ] && [ -d results/components/fid_net ]; then
        timeout 20 lumos vae-ceiling --cfg "$CFG" --data results/data/imagenet \
            2>>"$OUT/snakemake.log" | tee -a "$OUT/summary.txt" ||
            echo "vae-ceiling exit $? (124: stopped at 20 s)" | tee -a "$OUT/summary.txt"
    fi
    for f in results/table1.md results/table1_samples.png; do [ -f "$f" ] && cp "$f" "$OUT/"; done
    tar czf "$OUT/logs.tgz" results/logs results/pretrain/*/loss.csv results/pretrain/*/train_summary.json \
        results/components/*/train_metrics.json 2>/dev/null
    return $rc
}

bench() {
    # DiT-XL/2 at one batch (the bf16 eager step fits 264 on an H200), 8 timed steps per variant;
    # then the gpu preset's DiT-T/2 (16x16 latents, 64-d DINO CLS) at its training batch.
    timeout 140 lumos bench --gpu --steps 8 --batch 256 --variants bf16,sdpa-cudnn,fused-adamw,all \
        2>&1 | tee "$OUT/bench.txt"
    timeout 60 lumos bench --gpu --size DiT-T/2 --latent-size 16 --cond-dim 64 --batch 256 --steps 100 \
        --variants bf16,step-sync,fused-adamw,all 2>&1 | tee -a "$OUT/bench.txt"
}

case "${1:-}" in
    wheels) wheels ;;
    table1) setup && table1 ;;
    bench) setup && bench ;;
    *) echo "usage: bash .ci/gpu-check.sh wheels|table1|bench" >&2; exit 2 ;;
esac
