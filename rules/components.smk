# Components: at tiny/smoke scale the DAG trains the VAE, the DINO- and MoCo-style encoders and
# the FID classifier, and saves them in Hugging Face format where the loaders expect them.


rule train_component:
    input:
        component_data,
    output:
        directory("results/components/{component}"),
    params:
        cfg=lambda wc: cfg_json(f"components.{wc.component}"),
    threads: 1
    resources:
        **rule_resources("train_component"),
    log:
        "results/logs/components/{component}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos train-component --component {wildcards.component} --threads {threads}"
        " --cfg {params.cfg:q} --data {input} --out {output} > {log} 2>&1"
