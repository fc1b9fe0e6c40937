"""`xmodseg` command line: thin argparse wrappers over importable functions (the rules call these)."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from xmodseg.errors import ConfigError, InputDataError, XmodsegError


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None


def _dataset(args: argparse.Namespace):  # -> DatasetSpec
    from xmodseg.registry import load_dataset

    return load_dataset(args.registry, args.dataset)


def cmd_synth(args: argparse.Namespace) -> None:
    from xmodseg.synth import generate_modality

    spec = _dataset(args)
    if spec.source.get("kind") != "synthetic":
        raise ConfigError(f"datasets.{spec.name}.source.kind is '{spec.source.get('kind')}', not 'synthetic'")
    generate_modality(spec, args.modality)


def cmd_preprocess(args: argparse.Namespace) -> None:
    from xmodseg.preprocess import PreprocessConfig, preprocess_modality

    preprocess_modality(_dataset(args), args.modality, PreprocessConfig.from_dict(args.params), args.out)


def cmd_fetch_source(args: argparse.Namespace) -> None:
    from xmodseg.datasets.fetch import prepare_source

    prepare_source(_dataset(args), args.modality, args.downloads, args.marker, args.path or None)


def cmd_import(args: argparse.Namespace) -> None:
    from xmodseg.datasets.fetch import import_modality

    import_modality(_dataset(args), args.modality, args.marker)


def cmd_list_cases(args: argparse.Namespace) -> None:
    from xmodseg.datasets.nifti_folder import list_cases

    cases = list_cases(args.folder, args.pattern)
    if not cases:
        raise InputDataError(f"{args.folder}: no file matches {args.pattern}")
    print("cases: [" + ", ".join(f'"{c}"' for c in cases) + "]")


def _parse_map(text: str) -> tuple[str, dict[int, int]]:
    """`mr:1=1,2=2` -> ("mr", {1: 1, 2: 2})."""
    mod, sep, pairs = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return mod, {int(k): int(v) for k, v in (p.split("=") for p in pairs.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected MODALITY:VALUE=CLASS,... (e.g. ct:100=1,205=2)") from None


def cmd_init_dataset(args: argparse.Namespace) -> None:
    from xmodseg.datasets.own_data import init_dataset

    folders = {m: getattr(args, m) for m in ("mr", "ct") if getattr(args, m)}
    result = init_dataset(args.name, folders, args.pattern, label_pattern=args.label_pattern, classes=args.classes,
                          maps=dict(args.map or []), test_fraction=args.test_fraction, out_dir=args.out)
    print(result.summary())


def _workflow_config(path: str) -> dict[str, Any]:
    from xmodseg.registry import read_yaml

    cfg = read_yaml(path, "workflow config")
    if not isinstance(cfg, dict) or not {"registry", "dataset"} <= set(cfg):
        raise ConfigError(f"{path}: not a workflow config (needs `registry:` and `dataset:`)")
    return cfg


def cmd_check_data(args: argparse.Namespace) -> int:
    from xmodseg.preprocess import PreprocessConfig
    from xmodseg.preprocess.check_data import check_data, format_checks
    from xmodseg.registry import load_dataset

    cfg = _workflow_config(args.configfile)
    spec = load_dataset(cfg["registry"], cfg["dataset"])
    used = {m for e in (cfg.get("experiments") or {}).values() for m in (e.get("source"), e.get("target"))}
    modalities = args.modality or [m for m in spec.modalities if m in used] or list(spec.modalities)
    out = f"{args.out}/{spec.name}"
    rows = check_data(spec, modalities, PreprocessConfig.from_dict(cfg.get("preprocess") or {}), cfg.get("data_path") or {}, out)
    print(format_checks(rows, out))
    return 1 if any(r.problem for r in rows) else 0


def cmd_predict(args: argparse.Namespace) -> None:
    from xmodseg.evaluation.predict import format_predictions, predict_scans

    print(format_predictions(predict_scans(args.model, args.input, args.output, cache=args.cache, batch_size=args.batch_size)))


def cmd_explain(args: argparse.Namespace) -> None:
    from xmodseg.provenance.explain import explain

    print(explain(args.experiment, args.cls, metric=args.metric, repo=args.repo, dataset=args.dataset))


def cmd_release_cache(args: argparse.Namespace) -> None:
    from xmodseg.datasets.fetch import release_tfrecords
    from xmodseg.datasets.sifa_release import build_cache

    spec = _dataset(args)
    build_cache(spec, args.modality, release_tfrecords(spec, args.modality, args.marker), args.out, slices_per_case=args.slices_per_case)


def cmd_prepare_cache(args: argparse.Namespace) -> None:
    """One modality's slice cache, by the registry's source kind: a release is already
    preprocessed (its cache comes from its own files), anything else is preprocessed here."""
    from xmodseg.registry import SourceKind

    spec = _dataset(args)
    if spec.source_kind(args.modality) is SourceKind.SIFA_RELEASE:
        if not args.marker:
            raise ConfigError(f"prepare-cache: modality '{args.modality}' of {spec.name} is a release; pass --marker (its fetch-source JSON)")
        cmd_release_cache(args)
    else:
        cmd_preprocess(args)


def cmd_tfrecords(args: argparse.Namespace) -> None:
    from xmodseg.datasets.tfrecord import tfrecords_to_cache

    files = sorted(str(p) for pattern in args.files for p in __import__("glob").glob(pattern)) or args.files
    tfrecords_to_cache(files, args.out, dataset=args.dataset, modality=args.modality, slices_per_case=args.slices_per_case)


def cmd_train(args: argparse.Namespace) -> None:
    from xmodseg.jobs import TrainJob, call_kwargs, job_from_args
    from xmodseg.methods.run import train_experiment

    train_experiment(**call_kwargs(job_from_args(TrainJob, args)))


def cmd_translate(args: argparse.Namespace) -> None:
    from xmodseg.jobs import TranslateJob, call_kwargs, job_from_args
    from xmodseg.translation.run import train_translator

    train_translator(**call_kwargs(job_from_args(TranslateJob, args)))


def cmd_translation_check(args: argparse.Namespace) -> None:
    from xmodseg.evaluation.anatomy import anatomy_check

    anatomy_check(args.translated_cache, args.source_cache, args.oracle, args.out)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from xmodseg.evaluation.evaluate import evaluate_model
    from xmodseg.jobs import EvaluateJob, call_kwargs, job_from_args
    from xmodseg.registry import load_dataset

    job = job_from_args(EvaluateJob, args)
    evaluate_model(spec=load_dataset(job.registry, job.dataset), **call_kwargs(job))  # registry + dataset -> spec


def cmd_aggregate(args: argparse.Namespace) -> None:
    from xmodseg.reporting.report import aggregate_seeds

    aggregate_seeds(args.metrics, args.out)


def cmd_report(args: argparse.Namespace) -> None:
    from xmodseg.reporting.report import build_report

    build_report(
        args.metrics,
        args.out,
        overlays=args.overlays,
        title=args.title,
        translation=args.translation,
        anatomy=args.anatomy,
        reference=args.reference,
        comparisons=args.comparisons,
        source_kinds=args.source_kinds,
        sweeps=args.sweeps,
    )


def cmd_compare(args: argparse.Namespace) -> None:
    from xmodseg.atomic import write_json
    from xmodseg.reporting.compare import compare_files, format_comparison, resolve_experiment

    files = [resolve_experiment(spec, args.metrics_root, args.dataset) for spec in (args.exp_a, args.exp_b)]
    result = compare_files(*files)
    print(format_comparison(result))
    if args.json:
        write_json(args.json, result.to_dict())


def cmd_dvc_yaml(args: argparse.Namespace) -> None:
    from xmodseg.provenance.dvc_stages import write_dvc_yaml

    changed = write_dvc_yaml(args.configfile, args.out)
    print(f"{args.out} {'written' if changed else 'unchanged'} for {args.configfile}")


def cmd_record(args: argparse.Namespace) -> None:
    from xmodseg.provenance.record import record

    done = record(args.repo, configfile=args.configfile, push=not args.no_push, git_commit=not args.no_git_commit, message=args.message)
    print(f"recorded {done['configfile']}: dvc.lock committed, HTML report {done['report']}"
          + (", pushed to the DVC remote" if done["pushed"] else "")
          + (f", git commit {str(done['git_commit'])[:12]}" if done["git_commit"] else ""))


def cmd_restore(args: argparse.Namespace) -> None:
    from xmodseg.provenance.record import restore

    restore(args.repo, configfile=args.configfile, pull=not args.no_pull)
    print("restored: dvc status clean, Snakemake has nothing to do")


def cmd_audit(args: argparse.Namespace) -> int:
    from xmodseg.provenance.audit import audit, format_result

    result = audit(args.path, repo=args.repo, reinfer=args.reinfer)
    print(format_result(result, brief=args.brief))
    return {"PASS": 0, "FAIL": 1, "UNRECORDED": 3}[result.verdict]


DESCRIPTION = """Cross-modality (MR <-> CT) segmentation with domain adaptation: the commands behind the
Snakemake pipeline, and the everyday ones around it (your own data, predictions, provenance)."""
EVERYDAY = ("init-dataset", "check-data", "list-cases", "predict", "audit", "explain", "compare", "record", "restore", "dvc-yaml")


def build_parser() -> argparse.ArgumentParser:
    from xmodseg import __version__
    from xmodseg.jobs import EvaluateJob, TrainJob, TranslateJob, add_job_arguments

    p = argparse.ArgumentParser(prog="xmodseg", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"xmodseg {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    listed: dict[str, str] = {}

    def add(name: str, help: str, **kwargs: Any) -> argparse.ArgumentParser:  # noqa: A002 (argparse's own name)
        """A subcommand, listed in the main help under everyday commands or pipeline steps."""
        listed[name] = help
        kwargs.setdefault("description", help[0].upper() + help[1:] + ".")
        return sub.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    def with_dataset(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--registry", default="config/datasets.yaml", metavar="REGISTRY_YAML", help="data-set registry YAML")
        sp.add_argument("--dataset", required=True, help="registry entry name")

    s = add("synth", help="generate the synthetic MR/CT phantom for one modality")
    with_dataset(s)
    s.add_argument("--modality", required=True)
    s.set_defaults(func=cmd_synth)

    s = add("fetch-source", help="download (resumable, verified) or locate one modality's source files")
    with_dataset(s)
    s.add_argument("--modality", required=True)
    s.add_argument("--downloads", required=True, metavar="DOWNLOAD_DIR", help="folder for downloads and extracted archives")
    s.add_argument("--marker", required=True, metavar="SOURCE_JSON", help="JSON to write: where the files are, their checksums")
    s.add_argument("--path", default="", metavar="YOUR_DATA", help="registration-gated data: your archive or folder")
    s.set_defaults(func=cmd_fetch_source)

    s = add("import", help="convert one modality into the registry layout (NIfTI, checked labels)")
    with_dataset(s)
    s.add_argument("--modality", required=True)
    s.add_argument("--marker", required=True, metavar="SOURCE_JSON", help="the fetch-source JSON")
    s.set_defaults(func=cmd_import)

    s = add("list-cases", help="case ids found in a source folder, as a registry `cases:` line",
            epilog='example: xmodseg list-cases "/data/LA2018/Training Set" --pattern "{case}/lgemri.nrrd"')
    s.add_argument("folder", metavar="SOURCE_DIR", help="the folder holding one source file per case")
    s.add_argument("--pattern", required=True, help='a source file per case, e.g. "{case}/lgemri.nrrd" or "images/{case}.nii.gz"')
    s.set_defaults(func=cmd_list_cases)

    s = add(
        "init-dataset", help="own data: list the cases and label values of your folders, write a registry entry and a config",
        description="Scan one folder per modality, match label values to classes, propose a test split, and write "
        "<out>/<name>_dataset.yaml (the registry entry) and <out>/<name>.yaml (a demo-scale workflow config). Overwrites nothing.",
        epilog='example: xmodseg init-dataset --name mine --mr /data/mr --ct /data/ct --pattern "images/{case}.nii.gz"',
    )
    s.add_argument("--name", required=True, help="data-set name (letters, digits, _ . -)")
    s.add_argument("--mr", metavar="DIR", help="folder with the MR images and labels")
    s.add_argument("--ct", metavar="DIR", help="folder with the CT images and labels")
    s.add_argument("--pattern", required=True, help='an image inside each folder, with {case}: "images/{case}.nii.gz"')
    s.add_argument("--label-pattern", default=None, help='its label (default: the image pattern with images -> labels)')
    s.add_argument("--classes", nargs="+", default=None, metavar="NAME", help="class names in class order (default class_1, class_2, ...)")
    s.add_argument("--map", action="append", type=_parse_map, metavar="MOD:V=C,...", help="raw value -> class index per modality, e.g. ct:100=1,205=2 (default: by the order of the values)")
    s.add_argument("--test-fraction", type=float, default=0.2, help="fraction of each modality's cases proposed as test cases (default 0.2)")
    s.add_argument("--out", default="config", metavar="CONFIG_DIR", help="folder for the two files (default config)")
    s.set_defaults(func=cmd_init_dataset)

    s = add(
        "check-data", help="check every case of a config's data set as preprocessing will see it, with QC pictures",
        description="Reads each image and label in full, compares their geometry, maps the label values, resamples and crops "
        "with the config's preprocess block and reports the labelled voxels inside the crop; one QC picture per case. Exit 1 on any problem.",
        epilog="example: xmodseg check-data --configfile config/mine.yaml",
    )
    s.add_argument("--configfile", required=True, metavar="CONFIG_YAML", help="the workflow config (registry, dataset, data_path, preprocess)")
    s.add_argument("--modality", nargs="+", default=None, help="only these modalities (default: those the experiments use)")
    s.add_argument("--out", default="results/check-data", metavar="QC_DIR", help="QC pictures and check.tsv go to QC_DIR/<dataset>/")
    s.set_defaults(func=cmd_check_data)

    s = add(
        "predict", help="segment new, unlabelled scans with a trained model (NIfTI on each scan's grid)",
        description="Preprocesses each scan as the model's target cache was, predicts, and writes OUTPUT/<scan>.nii.gz on the scan's "
        "own grid plus predictions.json (model, cache and scan sha256). Overwrites nothing.",
        epilog="example: xmodseg predict -m results/models/mine/oracle_ct/seed0/model.pt -i new_scans/ -o predictions/",
    )
    s.add_argument("-m", "--model", required=True, metavar="MODEL_PT", help="a trained model.pt (its model.json beside it)")
    s.add_argument("-i", "--input", required=True, metavar="SCANS", help="a scan file or a folder of scans")
    s.add_argument("-o", "--output", required=True, metavar="PREDICTION_DIR", help="folder for the predictions")
    s.add_argument("--cache", default=None, metavar="CACHE_DIR", help="the target modality's cache (default: the one the model's sidecar names)")
    s.add_argument("--batch-size", type=int, default=32, help="slices per forward pass")
    s.set_defaults(func=cmd_predict)

    s = add(
        "explain", help="where one reported number came from: data, cases, method, scale, inputs, commit",
        epilog="example: xmodseg explain oracle_ct LVC",
    )
    s.add_argument("experiment", metavar="EXP", help="experiment name (results/evaluation/<dataset>/EXP)")
    s.add_argument("cls", metavar="CLASS", nargs="?", default=None, help="a class (default: the mean over classes)")
    s.add_argument("--metric", default="dice", choices=["dice", "assd_mm", "sifa_dice", "sifa_assd_vox"], help="which number (default dice)")
    s.add_argument("--dataset", default=None, help="when the experiment exists for several data sets")
    s.add_argument("--repo", default=".", metavar="PROJECT_DIR", help="project root")
    s.set_defaults(func=cmd_explain)

    s = add("release-cache", help="the SIFA/PnP-AdaNet release (tfrecords + test volumes) as a slice cache")
    with_dataset(s)
    s.add_argument("--modality", required=True)
    s.add_argument("--marker", required=True, metavar="SOURCE_JSON", help="the fetch-source JSON (where the release is)")
    s.add_argument("--out", required=True, metavar="CACHE_DIR", help="cache folder to write")
    s.add_argument("--slices-per-case", type=int, default=600)
    s.set_defaults(func=cmd_release_cache)

    s = add("tfrecords", help="SIFA/PnP-AdaNet *.tfrecords -> a training slice cache (no TensorFlow)")
    s.add_argument("--files", nargs="+", required=True, metavar="TFRECORD", help="tfrecord files or glob patterns")
    s.add_argument("--out", required=True, metavar="CACHE_DIR", help="cache folder to write")
    s.add_argument("--dataset", required=True)
    s.add_argument("--modality", required=True, choices=["mr", "ct"])
    s.add_argument("--slices-per-case", type=int, default=600)
    s.set_defaults(func=cmd_tfrecords)

    s = add("preprocess", help="resample, crop, normalise and cache one modality")
    with_dataset(s)
    s.add_argument("--modality", required=True)
    s.add_argument("--params", type=_json_arg, default={}, help="the config's `preprocess` block as JSON")
    s.add_argument("--out", required=True, metavar="CACHE_DIR", help="cache folder to write")
    s.set_defaults(func=cmd_preprocess)

    s = add("prepare-cache", help="one modality's slice cache, by its source kind: preprocess, or a release's own cache")
    with_dataset(s)
    s.add_argument("--modality", required=True)
    s.add_argument("--params", type=_json_arg, default={}, help="the config's `preprocess` block as JSON (not used for a release)")
    s.add_argument("--marker", default=None, metavar="SOURCE_JSON", help="a release: its fetch-source JSON (where the release is)")
    s.add_argument("--out", required=True, metavar="CACHE_DIR", help="cache folder to write")
    s.add_argument("--slices-per-case", type=int, default=600, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_prepare_cache)

    # train / translate / evaluate: flags generated from the job dataclasses (xmodseg.jobs)
    s = add("train", help="train one experiment (method x direction x seed)")
    add_job_arguments(s, TrainJob)
    s.set_defaults(func=cmd_train)

    s = add("translate", help="train a translator and write the translated source cache")
    add_job_arguments(s, TranslateJob)
    s.set_defaults(func=cmd_translate)

    s = add("translation-check", help="evaluation only: does the target oracle find the source anatomy in translated images?")
    s.add_argument("--translated-cache", required=True, metavar="CACHE_DIR", help="the translator's output cache")
    s.add_argument("--source-cache", required=True, metavar="CACHE_DIR", help="the untranslated source cache")
    s.add_argument("--reference-model", "--oracle", dest="oracle", required=True, metavar="MODEL_PT", help="model.pt of a model trained with all target labels")
    s.add_argument("--out", required=True, metavar="ANATOMY_JSON", help="the check's result file")
    s.set_defaults(func=cmd_translation_check)

    s = add("evaluate", help="predict the target test volumes and compute Dice/ASSD")
    add_job_arguments(s, EvaluateJob)
    s.set_defaults(func=cmd_evaluate)

    s = add("aggregate", help="combine the seeds of one experiment into one metrics file")
    s.add_argument("--metrics", nargs="+", required=True, metavar="SEED_METRICS_JSON", help="the experiment's per-seed metrics.json files")
    s.add_argument("--out", required=True, metavar="EXPERIMENT_JSON", help="the experiment's metrics file to write")
    s.set_defaults(func=cmd_aggregate)

    s = add("report", help="summary tables, bar plot and overlays from metrics files")
    s.add_argument("--metrics", nargs="+", required=True, metavar="SEED_METRICS_JSON", help="per-seed metrics.json files")
    s.add_argument("--overlays", nargs="*", default=None, metavar="OVERLAY_NPZ", help="overlay.npz per metrics file, in the same order (none: no overlay figures)")
    s.add_argument("--translation", nargs="*", default=[], metavar="QUALITY_JSON", help="translators' quality.json files")
    s.add_argument("--anatomy", nargs="*", default=[], metavar="ANATOMY_JSON", help="translators' anatomy.json files")
    s.add_argument("--out", required=True, metavar="REPORT_DIR", help="report folder")
    s.add_argument("--title", default="xmodseg report")
    s.add_argument("--reference", type=_json_arg, default=None, help="published numbers to compare with (the config's `reference`)")
    s.add_argument("--comparisons", type=_json_arg, default=[], help="extra [[A, B], ...] experiment pairs (the config's `report.comparisons`)")
    s.add_argument("--sweeps", type=_json_arg, default=[], help="[{title, x, lines}] label-budget sweeps to plot (the config's `report.sweeps`)")
    s.add_argument("--source-kinds", type=_json_arg, default=None, help="{modality: data-set source kind}: is the SIFA-compatible grid the release's?")
    s.set_defaults(func=cmd_report)

    s = add("compare", help="paired differences A - B of Dice/ASSD per (test volume, seed), bootstrap 95 % CI",
            epilog="example: xmodseg compare co_da_ct20 supervised_subset_ct20")
    s.add_argument("exp_a", metavar="EXP_A", help="experiment name, a metrics.json, or a folder with seed*/metrics.json")
    s.add_argument("exp_b", metavar="EXP_B", help="the experiment to compare with (same target)")
    s.add_argument("--metrics-root", default="results/evaluation", help="where experiment names are looked up (<root>/<dataset>/<exp>/seed*/metrics.json)")
    s.add_argument("--dataset", default=None, help="data set folder under the root (needed when a name exists for several)")
    s.add_argument("--json", default=None, metavar="RESULT_JSON", help="also write the full result as JSON here")
    s.set_defaults(func=cmd_compare)

    s = add("dvc-yaml", help="write dvc.yaml (one DVC stage per Snakemake target) for a config",
            epilog="example: xmodseg dvc-yaml --configfile config/config.yaml --out dvc.yaml")
    s.add_argument("--configfile", default="config/config.yaml", metavar="CONFIG_YAML", help="the workflow config")
    s.add_argument("--out", default="dvc.yaml", metavar="DVC_YAML", help="where to write (default dvc.yaml)")
    s.set_defaults(func=cmd_dvc_yaml)

    s = add("record", help="after a finished Snakemake run: dvc commit, HTML report, dvc push, git commit",
            epilog="example: xmodseg record --configfile config/config.yaml -m 'demo run'")
    s.add_argument("--configfile", default="config/config.yaml", metavar="CONFIG_YAML", help="the config the run used")
    s.add_argument("--repo", default=".", metavar="PROJECT_DIR", help="project root")
    s.add_argument("--no-push", action="store_true", help="skip `dvc push`")
    s.add_argument("--no-git-commit", action="store_true", help="leave dvc.lock and metrics staged for your own commit")
    s.add_argument("-m", "--message", default=None, help="git commit message")
    s.set_defaults(func=cmd_record)

    s = add("restore", help="on a fresh clone: dvc pull, check dvc status, snakemake --touch",
            epilog="example: xmodseg restore --configfile config/config.yaml")
    s.add_argument("--configfile", default="config/config.yaml", metavar="CONFIG_YAML", help="the config the recorded run used")
    s.add_argument("--repo", default=".", metavar="PROJECT_DIR", help="project root")
    s.add_argument("--no-pull", action="store_true", help="the files are already in place")
    s.set_defaults(func=cmd_restore)

    s = add("audit", help="verify the chain behind every reported number: PASS (exit 0), FAIL (1) or UNRECORDED (3, not recorded yet)",
            epilog="examples: xmodseg audit    (the whole report)\n          xmodseg audit sifa_mr2ct --reinfer")
    s.add_argument("path", nargs="?", default="results/report/summary.md", metavar="REPORT_OR_METRICS",
                   help="summary.md/summary.csv (whole report), results/metrics/<ds>/<exp>.json, a per-seed metrics.json, or an experiment name")
    s.add_argument("--repo", default=".", metavar="PROJECT_DIR", help="project root")
    s.add_argument("--reinfer", action="store_true", help="also predict again with each model and compare with the stored predictions")
    s.add_argument("--brief", action="store_true", help="only the verdict and the links that are not ok")
    s.set_defaults(func=cmd_audit)

    width = max(map(len, listed)) + 2
    def lines(names: list[str]) -> str:
        return "\n".join(f"  {n:{width}}{listed[n]}" for n in names)
    p.epilog = (
        "everyday commands:\n" + lines([n for n in EVERYDAY if n in listed])
        + "\n\npipeline steps (Snakemake runs these; each job's command line is in its log):\n" + lines([n for n in listed if n not in EVERYDAY])
        + "\n\n`xmodseg COMMAND --help` describes a command, with an example."
    )
    return p


GPU_COMMANDS = ("train", "translate")  # their rules always declare gpu=1; evaluate only with --gpu 1


def _lease_gpu(args: argparse.Namespace) -> None:
    """Pick this job's GPU before anything initialises CUDA (see xmodseg.gpu_lease)."""
    if args.command in GPU_COMMANDS or getattr(args, "gpu", 0) > 0:
        import atexit

        from xmodseg import gpu_lease

        gpu_lease.acquire(getattr(args, "gpu_slots", None))
        atexit.register(gpu_lease.release)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # no subcommand: the overview, not an argparse error
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _lease_gpu(args)
        rc = args.func(args)
    except XmodsegError as exc:
        print(f"xmodseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # full disk, permissions: the message names the path; the traceback only with -v
        logging.getLogger(__name__).debug("traceback", exc_info=True)
        hint = " (disk full?)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        print(f"xmodseg {args.command}: error: {exc}{hint}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
