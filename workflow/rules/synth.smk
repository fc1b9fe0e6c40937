# Stage 1 (default data): generate the synthetic MR/CT phantom, one job per modality.
# Real data sets get their files from the download/import stage instead.
#
# Why a loop and not one wildcard rule: a job writes every case of its modality, and each of those
# files must be a declared output (prepare_cache reads them; `snakemake <raw file>` and the DVC data
# stage target them). Their names come from the registry and differ per modality, but Snakemake
# outputs are patterns, never functions of wildcards ("Only input files can be specified as
# functions", 9.27), and the registry layout does not give a modality a folder of its own that
# `directory()` could declare (the phantom's card sits in <root>/mr, its volumes in <root>/mr_train).
# So each modality gets its own rule; the body is the same declaration, filled from the resolver.
for _mod in R.modalities_of_kind(CFG, SourceKind.SYNTHETIC):

    rule:
        name:
            f"synth_{_mod}"
        output:
            files=R.raw_files(CFG, _mod),
            card=report(R.dataset_card(CFG, _mod), caption="../report/dataset_card.rst", category="Data", subcategory=_mod),
        params:
            registry=CFG.registry,
            dataset=DS,
            source=as_arg(dict(CFG.dataset.source_of(_mod))),  # generator seed/params: a change regenerates the data
            modality=_mod,
        log:
            log_path("synth").format(dataset=DS, modality=_mod),
        benchmark:
            benchmark_path("synth").format(dataset=DS, modality=_mod)
        conda:
            ENV
        shell:
            "xmodseg synth --registry {params.registry:q} --dataset {params.dataset:q} --modality {params.modality:q} > {log:q} 2>&1"
