# Stage 2: resample in physical space, crop, normalise (training-split statistics), cache slices.
# The SIFA/PnP-AdaNet release is already preprocessed: its cache comes from its own files.
if DATASET.source.get("kind") != "sifa_release":

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
            "xmodseg preprocess --registry {params.registry:q} --dataset {wildcards.dataset:q} "
            "--modality {wildcards.modality:q} --params {params.cfg} --out {output:q} > {log:q} 2>&1"

else:

    rule release_cache:
        input:
            raw_files,
            marker="data/downloads/{dataset}/{modality}/source.json",
        output:
            directory("data/prepared/{dataset}/{modality}"),
        params:
            registry=config["registry"],
        log:
            "logs/preprocess/{dataset}_{modality}.log",
        benchmark:
            "results/benchmarks/preprocess/{dataset}_{modality}.tsv"
        conda:
            ENV
        shell:
            "xmodseg release-cache --registry {params.registry:q} --dataset {wildcards.dataset:q} "
            "--modality {wildcards.modality:q} --marker {input.marker:q} --out {output:q} > {log:q} 2>&1"
