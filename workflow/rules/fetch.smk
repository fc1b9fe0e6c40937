# Stage 1 (real data): download (resumable, verified) or import a registration-gated archive or
# folder, then convert each modality into the registry's raw layout (NIfTI, labels checked).
for _mod in DATASET.modalities:
    if DATASET.source_of(_mod).get("kind") not in ("download", "import", "sifa_release"):
        continue

    rule:
        name:
            f"fetch_source_{_mod}"
        output:
            f"data/downloads/{DS}/{_mod}/source.json",
        params:
            registry=config["registry"],
            modality=_mod,
            # a new URL, checksum, layout or path fetches again (lambdas: `{case}` is not a wildcard)
            source=lambda w, s=as_arg(DATASET.source_of(_mod)): s,
            path=lambda w, p=shlex.quote(str(config.get("data_path", {}).get(_mod, ""))): p,
        log:
            f"logs/fetch/{DS}_{_mod}_source.log",
        benchmark:
            f"results/benchmarks/fetch/{DS}_{_mod}_source.tsv"
        retries: 2
        shell:
            "xmodseg fetch-source --registry {params.registry:q} --dataset {DS:q} --modality {params.modality:q} "
            "--downloads data/downloads/{DS:q}/{params.modality:q} --marker {output:q} --path {params.path} > {log:q} 2>&1"

    rule:
        name:
            f"import_{_mod}"
        input:
            f"data/downloads/{DS}/{_mod}/source.json",
        output:
            files=[str(p) for c in DATASET.modality(_mod).cases for p in (DATASET.image_path(_mod, c), DATASET.label_path(_mod, c))],
            manifest=report(f"{DATASET.root}/{_mod}/import_manifest.json", caption="../report/import_manifest.rst", category="Data", subcategory=_mod),
        params:
            registry=config["registry"],
            modality=_mod,
        log:
            f"logs/fetch/{DS}_{_mod}_import.log",
        benchmark:
            f"results/benchmarks/fetch/{DS}_{_mod}_import.tsv"
        conda:
            ENV
        shell:
            "xmodseg import --registry {params.registry:q} --dataset {DS:q} --modality {params.modality:q} --marker {input:q} > {log:q} 2>&1"
