# Config validation, the typed config, and the input/params functions the rules use. Every path and
# every planning-time check comes from the package (xmodseg.config, xmodseg.layout): nothing here
# knows a method, a translator or a file name.
import json
import os
import re
import shlex

from snakemake.utils import validate

from xmodseg.config import WorkflowConfig
from xmodseg.config import resolve as R
from xmodseg.config.presets import expand_presets
from xmodseg.layout import PATTERNS as P
from xmodseg.layout import benchmark_path, log_path
from xmodseg.methods import METHODS
from xmodseg.registry import SourceKind
from xmodseg.translation.registry import TRANSLATORS


# `train: {preset: NAME, ...overrides}` expanded first, so the schema and every job see plain blocks
_expanded = expand_presets(config)
config.clear()
config.update(_expanded)
validate(config, schema="../schemas/config.schema.yaml")

# The registries' declarations (cached: planning imports no method module, hence no torch).
CFG = WorkflowConfig.from_dict(config, methods=METHODS.declared, translators=TRANSLATORS.declared)  # ConfigError naming the key
R.check_data_paths(CFG, ", ".join(os.path.relpath(f) for f in workflow.configfiles) or "the workflow config")  # registration-gated data: said now, not at the fetch
DS = CFG.dataset.name
ENV = "../../envs/xmodseg.yaml"


# Names match NAME_PATTERN (schema, registry); escaped here so that a `.` matches only itself.
wildcard_constraints:
    dataset=re.escape(DS),
    modality="|".join(map(re.escape, CFG.dataset.modalities)),
    exp="|".join(map(re.escape, CFG.experiments)),
    tname="|".join(map(re.escape, CFG.translators)) or "no-translators",
    seed=r"\d+",


def as_arg(obj):
    """A config block as one shell-quoted JSON argument (also what Snakemake compares for reruns)."""
    return shlex.quote(json.dumps(obj, sort_keys=True))


def gpu_slots(wildcards, output):
    """The N of `--resources gpu=N` (0 without it), for `--gpu-slots`: a GPU job leases one of N
    device slots (xmodseg.gpu_lease), so the GPU count is stated once, on Snakemake's command line or
    profile. A machine fact, not a result's parameter: a params function that takes `output` counts
    as derived, and derived params are no rerun trigger, so another GPU count never reruns a job
    (`resources` would too, but evaluates every resource while the DAG is built).
    `workflow.global_resources` is Snakemake's parsed resource table (checked on 9.27)."""
    res = getattr(workflow, "global_resources", {}).get("gpu")
    value = getattr(res, "value", res)
    return int(value) if isinstance(value, (int, float)) else 0


def train_inputs(wildcards):
    return R.experiment_inputs(CFG, wildcards.exp)


def train_args(wildcards, input):
    """`--input ROLE=PATH` per declared input and `--assistant-cache`, from the job's own inputs."""
    args = [f"--input {shlex.quote(f'{role}={path}')}" for role, path in R.declared_inputs(dict(input.items())).items()]
    if "assistant" in input.keys():
        args.append(f"--assistant-cache {shlex.quote(input.assistant)}")
    return " ".join(args)


def prepare_cache_args(wildcards, input):
    return f"--marker {shlex.quote(input.marker)}" if "marker" in input.keys() else ""
