# xmodseg: cross-modality (MR <-> CT) segmentation with domain adaptation.
# Thin on purpose: config + schema validation (rules/common.smk), one include per stage, `all`.
from snakemake.utils import min_version

min_version("9.0")

report: "workflow/report/workflow.rst"

# The default config (config/config.yaml) is set in the workflow profile (profiles/default), so a
# `--configfile config/<x>.yaml` on the command line replaces it instead of being merged into it.

include: "workflow/rules/common.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/translate.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


# Seconds-long bookkeeping runs on the submit host, not as cluster jobs.
localrules:
    all,
    aggregate,
    report,


rule all:
    default_target: True
    input:
        R.report_outputs(CFG),
        R.experiment_metrics(CFG),
