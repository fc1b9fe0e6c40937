# Stage 1 (real data): download (resumable, verified) or import a registration-gated archive or
# folder, then convert each modality into the registry's raw layout (NIfTI, labels checked).
FETCHED = R.fetched_modalities(CFG)


rule fetch_source:
    output:
        P["download_marker"],
    params:
        registry=CFG.registry,
        downloads=lambda w: R.layout(CFG).downloads(w.modality),
        # a new URL, checksum, layout or path fetches again (lambdas: `{case}` is not a wildcard)
        source=lambda w: as_arg(dict(CFG.dataset.source_of(w.modality))),
        path=lambda w: shlex.quote(str(CFG.data_path.get(w.modality, ""))),
    log:
        log_path("fetch_source"),
    benchmark:
        benchmark_path("fetch_source")
    # no `retries`: downloads retry on their own (resumable); a configuration error must fail once (exit 2)
    wildcard_constraints:
        modality="|".join(map(re.escape, FETCHED)) or "no-fetched-modality",
    conda:
        ENV
    shell:
        "xmodseg fetch-source --registry {params.registry:q} --dataset {wildcards.dataset:q} --modality {wildcards.modality:q} "
        "--downloads {params.downloads:q} --marker {output:q} --path {params.path} > {log:q} 2>&1"


# A loop for the reason given in synth.smk: a job writes every case of its modality, each a
# declared output named by the registry (outputs cannot be functions of a wildcard).
for _mod in FETCHED:

    rule:
        name:
            f"import_{_mod}"
        input:
            R.layout(CFG).download_marker(_mod),
        output:
            files=R.raw_files(CFG, _mod),
            manifest=report(R.import_manifest(CFG, _mod), caption="../report/import_manifest.rst", category="Data", subcategory=_mod),
        params:
            registry=CFG.registry,
            dataset=DS,
            modality=_mod,
        log:
            log_path("import").format(dataset=DS, modality=_mod),
        benchmark:
            benchmark_path("import").format(dataset=DS, modality=_mod)
        conda:
            ENV
        shell:
            "xmodseg import --registry {params.registry:q} --dataset {params.dataset:q} --modality {params.modality:q} --marker {input:q} > {log:q} 2>&1"
