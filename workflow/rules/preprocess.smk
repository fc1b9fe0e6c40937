# Stage 2: resample in physical space, crop, normalise (training-split statistics), cache slices.
rule preprocess:
    input:
        raw_files,
    output:
        report(
            directory("data/prepared/{dataset}/{modality}"),
            patterns=["manifest.json", "norm_stats.json"],
            caption="../report/manifest.rst",
            category="Data",
            subcategory="{modality}",
        ),
    params:
        registry=config["registry"],
        cfg=as_arg(config["preprocess"]),
    log:
        "logs/preprocess/{dataset}_{modality}.log",
    benchmark:
        "results/benchmarks/preprocess/{dataset}_{modality}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
    conda:
        ENV
    shell:
        "xmodseg preprocess --registry {params.registry} --dataset {wildcards.dataset} "
        "--modality {wildcards.modality} --params {params.cfg} --out {output} > {log} 2>&1"
