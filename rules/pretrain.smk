# I2I pretraining. Resumable state lives in results/state/ (not a declared output, so
# Snakemake does not delete it): a killed run continues from its last checkpoint.


rule pretrain:
    input:
        run_features,
    output:
        model=directory("results/pretrain/{run}/model"),
        raw=directory("results/pretrain/{run}/model_raw"),
        curve="results/pretrain/{run}/loss.csv",
        plot="results/pretrain/{run}/loss.png",
        summary="results/pretrain/{run}/train_summary.json",
        snapshots=directory("results/pretrain/{run}/snapshots"),
    params:
        cfg=lambda wc: cfg_json(run_key(wc.run), "pretrain.model", "pretrain.train", "pretrain.snapshot_every"),
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
        released_checkpoint,
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
