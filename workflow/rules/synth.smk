# Stage 1 (default data): generate the synthetic MR/CT phantom, one job per modality.
# Real data sets get their files from the download/import stage instead.
if DATASET.source.get("kind") == "synthetic":
    for _mod in DATASET.modalities:

        rule:
            name:
                f"synth_{_mod}"
            output:
                files=[str(p) for c in DATASET.modality(_mod).cases for p in (DATASET.image_path(_mod, c), DATASET.label_path(_mod, c))],
                card=report(f"{DATASET.root}/{_mod}/dataset_card.md", caption="../report/dataset_card.rst", category="Data", subcategory=_mod),
            params:
                registry=config["registry"],
                dataset=DS,
                source=as_arg(DATASET.source),  # generator seed/params: a change regenerates the data
                modality=_mod,
            log:
                f"logs/synth/{DS}_{_mod}.log",
            benchmark:
                f"results/benchmarks/synth/{DS}_{_mod}.tsv"
            conda:
                ENV
            shell:
                "xmodseg synth --registry {params.registry:q} --dataset {params.dataset:q} --modality {params.modality:q} > {log:q} 2>&1"
