# Features: VAE latents and encoder tokens, extracted once per split and reused by every run.
# `features.jobs` parallel jobs (GPU jobs on a cluster) each encode every jobs-th data shard;
# a local gather joins their folders. Which encoders a folder caches: lumos/workflow/splits.py.
from lumos.workflow.jobs import feature_jobs  # noqa: E402
from lumos.workflow.names import features_of  # noqa: E402
from lumos.workflow.splits import feature_encoders, patch_encoders  # noqa: E402


localrules:
    gather_features,


rule features:
    input:
        data=lambda wc: f"results/data/{features_of(wc.split)[0]}",
        components=lambda wc: trained("vae", *feature_encoders(config, wc.split)),
    output:
        temp(directory("results/features/{split}.part{part}")),
    # a training split's features first: pretraining, the longest jobs, waits for them
    priority: lambda wc: 0 if features_of(wc.split)[0] in config["eval"]["splits"] else 10
    params:
        cfg=lambda wc: cfg_json(
            "components.vae",
            *(f"components.{e}" for e in feature_encoders(config, wc.split)),
            "features.batch_size",
            "features.patch_tokens",
        ),
        encoders=lambda wc: " ".join(feature_encoders(config, wc.split)),
        patch=lambda wc: " ".join(patch_encoders(config, wc.split)),
        parts=lambda wc: feature_jobs(config, wc.split),
    threads: 1
    resources:
        **rule_resources("features"),
    log:
        "results/logs/features/{split}.part{part}.log",
    benchmark:
        "results/benchmarks/features/{split}.part{part}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos features --threads {threads} --cfg {params.cfg:q} --data {input.data} --encoders {params.encoders}"
        " --patch-tokens {params.patch} --part {wildcards.part} --parts {params.parts} --out {output} > {log} 2>&1"


rule gather_features:
    input:
        lambda wc: parts(f"results/features/{wc.split}", feature_jobs(config, wc.split)),
    output:
        directory("results/features/{split}"),
    log:
        "results/logs/features/{split}.gather.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos gather --kind features --parts {input} --out {output} > {log} 2>&1"
