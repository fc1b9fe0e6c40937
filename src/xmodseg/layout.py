"""Every path of the workflow, in one place.

Rules (as wildcard patterns), DVC stage generation, record, audit and report all ask `Layout` where a
file lives, so a file moves by editing one line here. Paths are relative to the project folder (the
working directory of Snakemake and of every `xmodseg` command it runs).

Example:
    >>> L = Layout("synthetic")
    >>> L.model("sifa_mr2ct", 0)
    'results/models/synthetic/sifa_mr2ct/seed0/model.pt'
    >>> PATTERNS["model"]
    'results/models/{dataset}/{exp}/seed{seed}/model.pt'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

# Wildcards: {dataset} {modality} {tname} (a translators entry) {exp} (an experiments entry) {seed}.
PATTERNS: dict[str, str] = {
    # data
    "download_marker": "data/downloads/{dataset}/{modality}/source.json",
    "downloads": "data/downloads/{dataset}/{modality}",
    "prepared": "data/prepared/{dataset}/{modality}",
    "translated": "data/translated/{dataset}/{tname}/seed{seed}",
    "translated_dir": "data/translated/{dataset}/{tname}",
    # translators
    "translator_dir": "results/translators/{dataset}/{tname}",
    "translator_model": "results/translators/{dataset}/{tname}/seed{seed}/model.pt",
    "translator_sidecar": "results/translators/{dataset}/{tname}/seed{seed}/model.json",
    "translator_quality": "results/translators/{dataset}/{tname}/seed{seed}/quality.json",
    "translator_preview": "results/translators/{dataset}/{tname}/seed{seed}/preview.png",
    "translator_anatomy": "results/translators/{dataset}/{tname}/seed{seed}/anatomy.json",
    "translator_checkpoints": "results/checkpoints/{dataset}/translators/{tname}/seed{seed}",
    "translator_logs": "logs/translate/{dataset}/{tname}",
    # experiments
    "model_dir": "results/models/{dataset}/{exp}",
    "model": "results/models/{dataset}/{exp}/seed{seed}/model.pt",
    "sidecar": "results/models/{dataset}/{exp}/seed{seed}/model.json",
    "checkpoints": "results/checkpoints/{dataset}/{exp}/seed{seed}",
    "train_logs": "logs/train/{dataset}/{exp}",
    "evaluation_dir": "results/evaluation/{dataset}/{exp}",
    "seed_metrics": "results/evaluation/{dataset}/{exp}/seed{seed}/metrics.json",
    "overlay": "results/evaluation/{dataset}/{exp}/seed{seed}/overlay.npz",
    "predictions": "results/evaluation/{dataset}/{exp}/seed{seed}/predictions",
    "experiment_metrics": "results/metrics/{dataset}/{exp}.json",
    # report
    "report_dir": "results/report",
    "report_md": "results/report/summary.md",
    "report_csv": "results/report/summary.csv",
    "report_bar": "results/report/dice_bar.png",
    "report_comparisons": "results/report/comparisons.csv",
    "report_per_case": "results/report/per_case.csv",
    "report_curves": "results/report/learning_curves.png",
    "report_grid": "results/report/grid_{source}2{target}.png",  # one per direction
    "report_overlay": "results/report/overlay_{exp}.png",
    "report_sweeps": "results/report/sweeps.png",
    # provenance
    "provenance_report": "results/provenance/report.html",
    "provenance_metadata": "results/provenance/report_metadata.yaml",
    "metrics_root": "results/metrics",
    "evaluation_root": "results/evaluation",
}

# Logs and benchmarks: one per rule and job, "{stage}" is the rule's stage name.
LOG_PATTERNS: dict[str, str] = {
    "translate": "logs/translate/{dataset}/{tname}/seed{seed}",
    "translation_check": "logs/translation_check/{dataset}/{tname}/seed{seed}",
    "train": "logs/train/{dataset}/{exp}/seed{seed}",
    "evaluate": "logs/evaluate/{dataset}/{exp}/seed{seed}",
    "aggregate": "logs/aggregate/{dataset}/{exp}",
    "prepare_cache": "logs/preprocess/{dataset}_{modality}",
    "synth": "logs/synth/{dataset}_{modality}",
    "fetch_source": "logs/fetch/{dataset}_{modality}_source",
    "import": "logs/fetch/{dataset}_{modality}_import",
    "report": "logs/report/report",
}


def log_path(stage: str, suffix: str = ".log") -> str:
    """The wildcard log pattern of a rule (suffix `.jsonl` for loss logs)."""
    return LOG_PATTERNS[stage] + suffix


def sidecar_of(model: str | PurePath) -> str:
    """The JSON sidecar written next to a model file (experiments' and translators' alike)."""
    return PurePath(model).with_suffix(".json").as_posix()


def match(kind: str, path: str | PurePath) -> dict[str, str] | None:
    """The wildcards of `path` if it is an instance of PATTERNS[kind] (e.g. the data set of a
    metrics file), else None."""
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(PATTERNS[kind]))
    m = re.fullmatch(regex, PurePath(path).as_posix())
    return m.groupdict() if m else None


def benchmark_path(stage: str) -> str:
    """The wildcard benchmark pattern of a rule (`results/benchmarks/<stage>/...tsv`)."""
    return "results/benchmarks/" + LOG_PATTERNS[stage].split("/", 1)[1] + ".tsv"


@dataclass(frozen=True)
class Layout:
    """The concrete paths of one data set's run (the wildcards filled in)."""

    dataset: str

    def path(self, kind: str, **wildcards: object) -> str:
        return PATTERNS[kind].format(dataset=self.dataset, **wildcards)

    # data
    def download_marker(self, modality: str) -> str:
        return self.path("download_marker", modality=modality)

    def downloads(self, modality: str) -> str:
        return self.path("downloads", modality=modality)

    def prepared(self, modality: str) -> str:
        return self.path("prepared", modality=modality)

    def translated(self, tname: str, seed: int) -> str:
        return self.path("translated", tname=tname, seed=seed)

    # translators
    def translator_dir(self, tname: str) -> str:
        return self.path("translator_dir", tname=tname)

    def translator_model(self, tname: str, seed: int) -> str:
        return self.path("translator_model", tname=tname, seed=seed)

    def translator_quality(self, tname: str, seed: int) -> str:
        return self.path("translator_quality", tname=tname, seed=seed)

    def translator_anatomy(self, tname: str, seed: int) -> str:
        return self.path("translator_anatomy", tname=tname, seed=seed)

    # experiments
    def model_dir(self, exp: str) -> str:
        return self.path("model_dir", exp=exp)

    def model(self, exp: str, seed: int) -> str:
        return self.path("model", exp=exp, seed=seed)

    def sidecar(self, exp: str, seed: int) -> str:
        return self.path("sidecar", exp=exp, seed=seed)

    def evaluation_dir(self, exp: str) -> str:
        return self.path("evaluation_dir", exp=exp)

    def seed_metrics(self, exp: str, seed: int) -> str:
        return self.path("seed_metrics", exp=exp, seed=seed)

    def overlay(self, exp: str, seed: int) -> str:
        return self.path("overlay", exp=exp, seed=seed)

    def predictions(self, exp: str, seed: int) -> str:
        return self.path("predictions", exp=exp, seed=seed)

    def experiment_metrics(self, exp: str) -> str:
        return self.path("experiment_metrics", exp=exp)

    def report_overlay(self, exp: str) -> str:
        return self.path("report_overlay", exp=exp)

    def log(self, stage: str, suffix: str = ".log", **wildcards: object) -> str:
        return log_path(stage, suffix).format(dataset=self.dataset, **wildcards)


REPORT_FILES = ("report_md", "report_csv", "report_bar")
