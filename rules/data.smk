# Data: one folder of image shards + ground truth per split (Shapes world or curated folders).


rule data_split:
    output:
        directory("results/data/{split}"),
    params:
        cfg=lambda wc: data_config(wc.split),
        base=lambda wc: split_base(wc.split)[0],
    resources:
        **rule_resources("data_split"),
    log:
        "results/logs/data/{split}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos data --split {params.base} --cfg {params.cfg:q} --out {output} > {log} 2>&1"
