# T2I fine-tuning from an I2I prior (eq. 2): caption tokens are cached once per captioned split,
# then each fine-tune loads its prior, attaches a fresh caption projection and trains on the pairs.
# Resumable state lives in results/state/ like pretraining. Fine-tune names are
# <prior>-<text encoder>-<captions>-n<noise %> (lumos/workflow/names.py parses them; the rules ask
# it rather than splitting names themselves).
from lumos.workflow.jobs import text_jobs  # noqa: E402
from lumos.workflow.names import parse_finetune  # noqa: E402
from lumos.workflow.snapshots import t2i_snapshots  # noqa: E402
from lumos.workflow.splits import (
    split_base,
    stage_features,
    t2i_stages,
    t2i_text,
    text_encoders,
    text_reused,
)  # noqa: E402

T2I_MAIN = config["t2i"]["main"]
TEXT_ENCODERS = text_encoders(config)  # the main fine-tune's and those Figures 11 and 11b compare
SNAPSHOTS = t2i_snapshots(config)  # the EMA snapshots of a fine-tune: the figures' curves
# Table S1: stage k >= 2 continues stage k-1 at a higher resolution on results/data/pairs_<px>px.
STAGES = t2i_stages(config)


localrules:
    gather_text_features,


rule text_features:
    input:
        # a bucketed curated split copies its caption tokens from its base split's (the same images,
        # matched by key): no text encoder runs again
        unpack(
            lambda wc: (
                {
                    "reuse_text": f"results/features/{split_base(config, wc.split)[0]}_text",
                    "reuse_data": f"results/data/{split_base(config, wc.split)[0]}",
                }
                if text_reused(config, wc.split)
                else {}
            )
        ),
        data="results/data/{split}",
        components=trained(*TEXT_ENCODERS),
    output:
        temp(directory("results/features/{split}_text.part{part}")),
    params:
        cfg=cfg_json(*(f"components.{e}" for e in TEXT_ENCODERS), "features.batch_size"),
        encoders=" ".join(TEXT_ENCODERS),
        parts=lambda wc: text_jobs(config, wc.split),
        reuse=lambda wc, input: (
            f"--reuse-text {input.reuse_text} --reuse-data {input.reuse_data}" if "reuse_text" in input.keys() else ""
        ),
    threads: 1
    resources:
        **rule_resources("text_features"),
    log:
        "results/logs/features/{split}_text.part{part}.log",
    benchmark:
        "results/benchmarks/features/{split}_text.part{part}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos text-features --threads {threads} --cfg {params.cfg:q} --data {input.data} --encoders {params.encoders}"
        " --part {wildcards.part} --parts {params.parts} {params.reuse} --out {output} > {log} 2>&1"


rule gather_text_features:
    input:
        lambda wc: parts(f"results/features/{wc.split}_text", text_jobs(config, wc.split)),
    output:
        directory("results/features/{split}_text"),
    log:
        "results/logs/features/{split}_text.gather.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos gather --kind features --parts {input} --out {output} > {log} 2>&1"


rule finetune:
    input:
        features="results/features/pairs",
        text="results/features/pairs_text",
        # the I2I model a fine-tune starts from ([] for `none`: from scratch)
        prior=lambda wc: (
            []
            if parse_finetune(wc.ft)["prior"] == "none"
            else f"results/pretrain/{parse_finetune(wc.ft)['prior']}/model"
        ),
    output:
        model=directory("results/t2i/{ft}/model"),
        raw=directory("results/t2i/{ft}/model_raw"),
        snapshots=directory("results/t2i/{ft}/snapshots"),
        curve="results/t2i/{ft}/loss.csv",
        plot="results/t2i/{ft}/loss.png",
        summary="results/t2i/{ft}/train_summary.json",
    params:
        cfg=cfg_json(
            "t2i.train", "t2i.cond_dropout", "t2i.snapshot_every", "t2i.long_caption_fraction", "pretrain.model"
        ),
        prior=lambda wc, input: input.prior or "none",
        state="results/state/t2i/{ft}",
    threads: 1
    resources:
        **rule_resources("finetune", signal=True),
    log:
        "results/logs/t2i/{ft}.log",
    benchmark:
        "results/benchmarks/t2i/{ft}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "{resources.mpi} lumos launch --processes {resources.processes} --nodes {resources.nodes} --"
        " finetune --threads {threads} --cfg {params.cfg:q} --ft {wildcards.ft} --prior {params.prior}"
        " --features {input.features} --text {input.text} --out-model {output.model} --out-raw {output.raw}"
        " --out-curve {output.curve} --out-plot {output.plot} --out-summary {output.summary}"
        " --out-snapshots {output.snapshots} --state {params.state} > {log} 2>&1"


rule finetune_stage:
    input:
        # the pair set's features at the stage's resolution (in its aspect-ratio buckets when the stage
        # has `aspect_ratios`: Table S1's multi-scale stage) and its caption tokens
        unpack(lambda wc: {k: f"results/features/{v}" for k, v in stage_features(config, wc.stage).items()}),
        # the model a stage continues: the previous stage's (stage 1 = the fine-tune itself)
        init=lambda wc: (
            f"results/t2i/{wc.ft}/model"
            if int(wc.stage) == 2
            else f"results/t2i/{wc.ft}/stage{int(wc.stage) - 1}/model"
        ),
    output:
        model=directory("results/t2i/{ft}/stage{stage}/model"),
        raw=directory("results/t2i/{ft}/stage{stage}/model_raw"),
        curve="results/t2i/{ft}/stage{stage}/loss.csv",
        plot="results/t2i/{ft}/stage{stage}/loss.png",
        summary="results/t2i/{ft}/stage{stage}/train_summary.json",
    params:
        cfg=lambda wc: cfg_json(
            f"t2i.stages.{int(wc.stage) - 2}.train", "t2i.cond_dropout", "t2i.long_caption_fraction", "pretrain.model"
        ),
        state="results/state/t2i/{ft}/stage{stage}",
    threads: 1
    resources:
        **rule_resources("finetune", signal=True),
    log:
        "results/logs/t2i/{ft}.stage{stage}.log",
    benchmark:
        "results/benchmarks/t2i/{ft}.stage{stage}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "{resources.mpi} lumos launch --processes {resources.processes} --nodes {resources.nodes} --"
        " finetune --threads {threads} --cfg {params.cfg:q} --ft {wildcards.ft} --stage {wildcards.stage}"
        " --init {input.init} --features {input.features} --text {input.text} --out-model {output.model}"
        " --out-raw {output.raw} --out-curve {output.curve} --out-plot {output.plot}"
        " --out-summary {output.summary} --state {params.state} > {log} 2>&1"


# The fine-tune as a diffusers pipeline with its model card (docs/pipelines.md); the main
# fine-tune's card lists its Table 2 FIDs, the others' say where the workflow writes theirs.
rule t2i_pipeline:
    input:
        model="results/t2i/{ft}/model",
        summary="results/t2i/{ft}/train_summary.json",
        fid=lambda wc: (
            [f"results/eval/t2i/{wc.ft}/final/fid_coco_{c}.json" for c in ("short", "long")]
            if wc.ft == T2I_MAIN
            else []
        ),
        components=trained("vae", *TEXT_ENCODERS),
    output:
        directory("results/t2i/{ft}/pipeline"),
    params:
        cfg=lambda wc: cfg_json("components.vae", f"components.{t2i_text(config, wc.ft)}", "sample"),
        text=lambda wc: t2i_text(config, wc.ft),
    resources:
        **rule_resources("text_features"),  # loads the text encoder (paper: the 4.7B T5) like a text-feature job
    log:
        "results/logs/t2i/{ft}_pipeline.log",
    benchmark:
        "results/benchmarks/t2i/{ft}_pipeline.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos export-pipeline --kind t2i --cfg {params.cfg:q} --encoder {params.text} --model {input.model}"
        " --summary {input.summary} --metrics {input.fid} --name {wildcards.ft} --out {output} > {log} 2>&1"
