# Stage 5b: per-experiment aggregate over seeds (the DVC metric) and the report.
rule aggregate:
    input:
        lambda w: R.seed_metrics(CFG, w.exp),
    output:
        report(P["experiment_metrics"], caption="../report/experiment_metrics.rst", category="Summary", subcategory="{exp}"),
    log:
        log_path("aggregate"),
    benchmark:
        benchmark_path("aggregate")
    conda:
        ENV
    shell:
        "xmodseg aggregate --metrics {input:q} --out {output:q} > {log:q} 2>&1"


rule report:
    input:
        **R.report_inputs(CFG),
    output:
        md=report(P["report_md"], caption="../report/summary.rst", category="Summary"),
        csv=report(P["report_csv"], caption="../report/summary.rst", category="Summary"),
        bar=report(P["report_bar"], caption="../report/dice_bar.rst", category="Summary"),
        comparisons=report(P["report_comparisons"], caption="../report/comparisons.rst", category="Summary"),
        per_case=report(P["report_per_case"], caption="../report/per_case.rst", category="Summary"),
        curves=report(P["report_curves"], caption="../report/learning_curves.rst", category="Summary"),
        overlays=report(R.report_overlays(CFG), caption="../report/overlay.rst", category="Overlays"),
        sweeps=R.report_sweeps(CFG),
        grids=report(R.report_grids(CFG), caption="../report/case_grid.rst", category="Summary"),
    params:
        out=lambda w, output: os.path.dirname(output.md),  # the folder of the declared outputs
        title=CFG.report.get("title", "xmodseg report"),  # plain text, quoted by :q below
        reference=f"--reference {as_arg(CFG.raw['reference'])}" if CFG.raw.get("reference") else "",
        comparisons=as_arg([list(pair) for pair in CFG.comparisons]),
        sweeps=as_arg(list(CFG.sweeps)),
        source_kinds=as_arg({m: CFG.dataset.source_of(m).get("kind", "") for m in CFG.dataset.modalities}),
    log:
        log_path("report"),
    benchmark:
        benchmark_path("report")
    conda:
        ENV
    shell:
        "xmodseg report --metrics {input.metrics:q} --overlays {input.overlays:q} --translation {input.translation:q} "
        "--anatomy {input.anatomy:q} --out {params.out:q} --title {params.title:q} {params.reference} "
        "--comparisons {params.comparisons} --sweeps {params.sweeps} --source-kinds {params.source_kinds} > {log:q} 2>&1"
