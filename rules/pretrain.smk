# I2I pretraining. Resumable state lives in results/state/ (not a declared output, so
# Snakemake does not delete it): a killed run continues from its last checkpoint. Run names
# (<run>[_pool<N>][_drop<P>]...): lumos/workflow/names.py.
from lumos.workflow.inputs import released_checkpoint  # noqa: E402
from lumos.workflow.names import parse_run, run_args  # noqa: E402
from lumos.workflow.splits import run_features  # noqa: E402


rule pretrain:
    input:
        # the pool, or ImageNet-1K (`data: imagenet1k`, the paper's Figure 8 priors); `+<encoder>` for
        # a run whose encoder is not a main one
        lambda wc: f"results/features/{run_features(config, wc.run)}",
    output:
        model=directory("results/pretrain/{run}/model"),
        raw=directory("results/pretrain/{run}/model_raw"),
        curve="results/pretrain/{run}/loss.csv",
        plot="results/pretrain/{run}/loss.png",
        summary="results/pretrain/{run}/train_summary.json",
        snapshots=directory("results/pretrain/{run}/snapshots"),
    params:
        cfg=lambda wc: cfg_json(
            f"pretrain.runs.{parse_run(wc.run)['base']}", "pretrain.model", "pretrain.train", "pretrain.snapshot_every"
        ),
        run=lambda wc: run_args(wc.run),
        state="results/state/pretrain/{run}",
    threads: 1
    resources:
        **rule_resources("pretrain", signal=True),
    log:
        "results/logs/pretrain/{run}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "{resources.mpi} lumos launch --processes {resources.processes} --nodes {resources.nodes} --"
        " pretrain --threads {threads} --cfg {params.cfg:q} {params.run} --features {input}"
        " --out-model {output.model} --out-raw {output.raw} --out-curve {output.curve}"
        " --out-plot {output.plot} --out-summary {output.summary} --out-snapshots {output.snapshots}"
        " --state {params.state} > {log} 2>&1"


# The authors' released weights (config `released.i2i` / `released.t2i`), imported into a LumosDiT
# folder and sampled like a run of our own (`released_i2i` in Table 1).
rule import_released:
    input:
        lambda wc: released_checkpoint(config, wc.kind),  # checked: unset or missing names the key
    output:
        directory("results/released/{kind}/model"),
    resources:
        **rule_resources("import_released"),
    log:
        "results/logs/released/{kind}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos import-released --checkpoint {input} --kind {wildcards.kind} --out {output} > {log} 2>&1"
