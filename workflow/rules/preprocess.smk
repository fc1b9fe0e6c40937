# Stage 2: the slice cache of one modality. `xmodseg prepare-cache` dispatches on the registry's
# source kind: resample in physical space, crop, normalise (training-split statistics) and cache
# slices, or, for an already preprocessed release, build the cache from its own files.
rule prepare_cache:
    input:
        unpack(lambda w: R.prepare_cache_inputs(CFG, w.modality)),
    output:
        report(
            directory(P["prepared"]),
            patterns=["manifest.json", "norm_stats.json"],
            caption="../report/manifest.rst",
            category="Data",
            subcategory="{modality}",
        ),
    params:
        registry=CFG.registry,
        cfg=lambda w: as_arg(R.prepare_cache_params(CFG, w.modality)),
        marker=prepare_cache_args,
    log:
        log_path("prepare_cache"),
    benchmark:
        benchmark_path("prepare_cache")
    threads: 2
    resources:
        mem_mb=4000,
    conda:
        ENV
    shell:
        "xmodseg prepare-cache --registry {params.registry:q} --dataset {wildcards.dataset:q} "
        "--modality {wildcards.modality:q} --params {params.cfg} {params.marker} --out {output:q} > {log:q} 2>&1"
