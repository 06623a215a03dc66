# Components: at tiny/smoke scale the DAG trains the VAE, the DINO- and MoCo-style encoders and
# the FID classifier, and saves them in Hugging Face format where the loaders expect them.

# The split a component trains on: labelled images for the FID net, the pair set for the text
# encoders (CLIP trains on it; T5 is randomly initialised), the clips for the video network, the
# pool otherwise.
COMPONENT_DATA = {"fid_net": "classifier", "t5": "pairs", "clip": "pairs", "video_net": "video_train"}


rule train_component:
    input:
        lambda wc: f"results/data/{COMPONENT_DATA.get(wc.component, 'pool')}",
    output:
        directory("results/components/{component}"),
    # the long chain first: the VAE (the longest, and every features job waits for it), then the
    # encoders (features -> pretraining); the FID net waits
    priority: lambda wc: {"vae": 20, "fid_net": 0}.get(wc.component, 10)
    params:
        cfg=lambda wc: cfg_json(f"components.{wc.component}"),
    threads: 1
    resources:
        **rule_resources("train_component"),
    log:
        "results/logs/components/{component}.log",
    benchmark:
        "results/benchmarks/components/{component}.tsv"
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos train-component --component {wildcards.component} --threads {threads}"
        " --cfg {params.cfg:q} --data {input} --out {output} > {log} 2>&1"
