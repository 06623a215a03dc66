# Data: one folder of image shards + ground truth per split (Shapes world or curated folders).


rule data_split:
    output:
        directory("results/data/{split}"),
    params:
        cfg=lambda wc: data_cfg(wc.split),
        args=lambda wc: data_args(wc.split),
    resources:
        **rule_resources("data_split"),
    log:
        "results/logs/data/{split}.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos data {params.args} --cfg {params.cfg:q} --out {output} > {log} 2>&1"
