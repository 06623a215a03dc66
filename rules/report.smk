# Report: the paper's tables and figures.

localrules:
    table1,


rule table1:
    input:
        fid=expand(
            "results/eval/fid/{run}_{split}.json",
            run=["lumos_i2i", "rcg", "untrained", "real"],
            split=EVAL_SPLITS,
        ),
        grid_data=f"results/data/{EVAL_SPLITS[0]}",
        lumos=f"results/samples/lumos_i2i/{EVAL_SPLITS[0]}",
        rcg=f"results/samples/rcg/{EVAL_SPLITS[0]}",
    output:
        csv="results/table1.csv",
        md="results/table1.md",
        grid="results/table1_samples.png",
    params:
        cfg=as_json(grid_images=config["eval"]["grid_images"]),
    log:
        "results/logs/report/table1.log",
    conda:
        "../envs/lumos.yaml"
    shell:
        "lumos table1 --cfg {params.cfg:q} --fid {input.fid} --csv {output.csv} --md {output.md}"
        " --grid {output.grid} --grid-data {input.grid_data}"
        " --grid-samples Lumos-I2I={input.lumos} RCG={input.rcg} > {log} 2>&1"
