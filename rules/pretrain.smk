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
    priority: 10  # before the sampling and FID jobs ready at the same time: the longest jobs start first
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
    benchmark:
        "results/benchmarks/pretrain/{run}.tsv"
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
    benchmark:
        "results/benchmarks/released/{kind}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos import-released --checkpoint {input} --kind {wildcards.kind} --out {output} > {log} 2>&1"


# A pretrain run as a diffusers pipeline (Lumos-I2I: reference image -> image) with its model card,
# which lists the run's FIDs (Table 1's) and draws its example input from the first eval split. Only
# runs conditioned on the CLS token of a transformers ViT have one (a KeyError names any other run).
I2I_PIPELINE_ENCODER = {
    name: block["encoder"]
    for name, block in config["pretrain"]["runs"].items()
    if block.get("encoder")
    and block.get("tokens") == "cls"
    and config["components"][block["encoder"]].get("kind") != "clip"
    and config["components"][block["encoder"]].get("format", "transformers") == "transformers"
}


rule i2i_pipeline:
    input:
        model="results/pretrain/{run}/model",
        summary="results/pretrain/{run}/train_summary.json",
        fid=expand("results/eval/fid/{{run}}_{split}.json", split=config["eval"]["splits"]),
        data=f"results/data/{config['eval']['splits'][0]}",
        components=lambda wc: trained("vae", I2I_PIPELINE_ENCODER[parse_run(wc.run)["base"]]),
    output:
        directory("results/pretrain/{run}/pipeline"),
    params:
        cfg=lambda wc: cfg_json(
            "components.vae", f"components.{I2I_PIPELINE_ENCODER[parse_run(wc.run)['base']]}", "sample"
        ),
        encoder=lambda wc: I2I_PIPELINE_ENCODER[parse_run(wc.run)["base"]],
    resources:
        **rule_resources("i2i_pipeline"),
    log:
        "results/logs/pretrain/{run}_pipeline.log",
    benchmark:
        "results/benchmarks/pretrain/{run}_pipeline.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos export-pipeline --kind i2i --cfg {params.cfg:q} --encoder {params.encoder} --model {input.model}"
        " --summary {input.summary} --metrics {input.fid} --data {input.data} --name {wildcards.run}"
        " --out {output} > {log} 2>&1"
