"""`xmodseg audit`: prove where every reported number came from, or name the link that broke.

For each per-seed metrics file behind a reported number the chain is:

- data: the target cache manifest and the caches the model trained on have the recorded sha256,
  and every cached array and raw scan they list still has its recorded sha256;
- model: model.pt has the sha256 recorded by evaluation and by its sidecar;
- inputs: every input the method declared and the sidecar records (a translator's model, another
  experiment's model, a translated cache: `inputs: {role: {path, sha256}}`) still has its recorded
  sha256 (a folder: its manifest, and the files the manifest lists);
- predictions: every stored prediction (scan grid and preprocessed grid) has its recorded sha256;
- value: Dice/ASSD recomputed from the stored predictions and ground truth with the evaluation's
  own function (so the SIFA-compatible numbers with medpy 0.4's definitions, evaluate.PROTOCOL)
  equal the per-case values exactly, and their aggregation equals the per-seed summary, the
  experiment's metrics file, summary.csv and summary.md as written. This is the only link that
  catches a wrong number whose files were all re-hashed consistently (tests/test_provenance.py);
- dvc.lock: model, sidecar, metrics and report files have the md5 `dvc commit` recorded;
- git: the recorded commit is an ancestor of HEAD (a dirty workspace at run time is named, with
  its changed files);
- reinfer (optional): predicting again with the model reproduces the stored predictions. A model
  whose own link is broken is never loaded (a tampered file is not run); that link says why.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xmodseg.artifacts.cache import MANIFEST
from xmodseg.artifacts.metrics import CASE_METRICS as METRIC_KEYS
from xmodseg.errors import InputDataError
from xmodseg.hashing import sha256_file
from xmodseg.layout import PATTERNS, Layout, match, sidecar_of
from xmodseg.provenance.dvc_lock import DvcLock
from xmodseg.reporting.compare import direction_label


@dataclass
class Link:
    name: str
    ok: bool
    detail: str
    unrecorded: bool = False  # not ok only because nothing was recorded yet (no dvc.lock entry, no git commit)

    @property
    def status(self) -> str:
        return "ok" if self.ok else "UNRECORDED" if self.unrecorded else "BROKEN"


@dataclass
class Row:
    """One reported number and the verdict on its chain."""

    experiment: str
    metric: str
    cls: str
    reported: str
    recomputed: str
    broken: list[str] = field(default_factory=list)
    unrecorded: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.broken:
            return "BROKEN: " + ", ".join(dict.fromkeys(self.broken))
        return "UNRECORDED: " + ", ".join(dict.fromkeys(self.unrecorded)) if self.unrecorded else "ok"


@dataclass
class AuditResult:
    rows: list[Row]
    links: dict[str, list[Link]]  # per audited file (seed metrics, experiment metrics, report)

    @property
    def ok(self) -> bool:
        return self.verdict == "PASS"

    @property
    def verdict(self) -> str:
        """PASS (every link ok), UNRECORDED (values verified, but the run is not recorded into DVC
        or git yet: nothing contradicts it, nothing proves it either) or FAIL (a link is broken)."""
        links = [lk for ls in self.links.values() for lk in ls]
        if not self.rows or any(r.broken for r in self.rows) or any(lk.status == "BROKEN" for lk in links):
            return "FAIL"
        return "UNRECORDED" if any(r.unrecorded for r in self.rows) or any(not lk.ok for lk in links) else "PASS"


class _Hashes:
    """sha256 of files, each computed once per audit."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self._memo: dict[Path, str | None] = {}

    def sha(self, path: str | os.PathLike[str]) -> str | None:
        p = self.repo / path
        if p not in self._memo:
            self._memo[p] = sha256_file(p) if p.is_file() else None
        return self._memo[p]

    def check(self, path: str | os.PathLike[str], expected: str | None, what: str) -> str | None:
        """None if `path` has sha256 `expected`, else a message naming the file."""
        actual = self.sha(path)
        if actual is None:
            return f"{what} {path} is missing"
        if expected is None:
            return f"{what} {path}: no sha256 recorded"
        if actual != expected:
            return f"{what} {path}: sha256 {actual[:12]} differs from the record ({expected[:12]})"
        return None


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputDataError(f"{path}: not found") from None
    except json.JSONDecodeError as exc:
        raise InputDataError(f"{path}: not valid JSON ({exc})") from None


def _link(name: str, problems: Sequence[str], ok_detail: str, unrecorded: bool = False) -> Link:
    return Link(name, not problems, "; ".join(problems) if problems else ok_detail, bool(problems) and unrecorded)


def _lock_link(lock: DvcLock, paths: Sequence[str], ok_detail: str) -> Link:
    """dvc.lock against `paths`: UNRECORDED when it holds none of them, BROKEN on any mismatch."""
    checks = [(p, *lock.check(p)) for p in paths]
    problems = [m for _, ok, m in checks if not ok]
    return _link("dvc.lock", problems, ok_detail, unrecorded=all(lock.unrecorded(p) for p, ok, _ in checks if not ok))


# ---- data, model, predictions, git --------------------------------------------------------------


def _cache_problems(cache: str, manifest_sha: str | None, hashes: _Hashes, cases: Iterable[str] | None) -> list[str]:
    """A cache's manifest has its recorded sha256; its arrays and raw scans have theirs."""
    manifest_path = Path(cache) / MANIFEST
    problem = hashes.check(manifest_path, manifest_sha, "data manifest")
    if problem:
        return [problem]
    manifest = _load_json(hashes.repo / manifest_path)
    wanted = set(cases) if cases is not None else None
    problems = []
    for rec in manifest["cases"]:
        if wanted is not None and rec["case"] not in wanted:
            continue
        for key, what in (("image", "cached image"), ("label", "cached label")):
            if rec.get(key) and rec.get(f"{key}_sha256"):
                problems.append(hashes.check(Path(cache) / rec[key], rec[f"{key}_sha256"], what))
        for key, what in (("source_image", "raw image"), ("source_label", "raw label")):
            if rec.get(key):
                problems.append(hashes.check(rec[key], rec.get(f"{key}_sha256"), what))
    translated = manifest.get("translated")
    if translated:
        problems.append(hashes.check(translated["model"], translated["model_sha256"], "translator model"))
    return [p for p in problems if p]


def _data_link(metrics: Mapping[str, Any], sidecar: Mapping[str, Any] | None, hashes: _Hashes) -> Link:
    prov = metrics["provenance"]
    target_cache = str(Path(prov["data_manifest"]).parent)
    test_cases = [c["case"] for c in metrics["cases"]]
    problems = _cache_problems(target_cache, prov.get("data_manifest_sha256"), hashes, test_cases)
    for case in metrics["cases"]:
        problems += [p for p in (hashes.check(case["ground_truth"], case.get("ground_truth_sha256"), "ground truth"),) if p]
    for rec in ((sidecar or {}).get("data") or {}).values():
        if rec:
            problems += _cache_problems(rec["cache"], rec.get("manifest_sha256"), hashes, rec.get("cases"))
    return _link("data", list(dict.fromkeys(problems)), f"{target_cache} and the training caches match their manifests")


def _model_link(metrics: Mapping[str, Any], sidecar: Mapping[str, Any] | None, hashes: _Hashes) -> Link:
    prov = metrics["provenance"]
    model = prov["model"]
    problems = [p for p in (hashes.check(model, prov.get("model_sha256"), "model"),) if p]
    if sidecar is None:
        problems.append(f"model sidecar {sidecar_of(model)} is missing")
    elif sidecar.get("model_sha256") != prov.get("model_sha256"):
        problems.append(f"model sidecar records sha256 {str(sidecar.get('model_sha256'))[:12]}, evaluation used {str(prov.get('model_sha256'))[:12]}")
    return _link("model", problems, f"{model} sha256 {str(prov.get('model_sha256'))[:12]}")


def _input_problems(role: str, rec: Mapping[str, Any], hashes: _Hashes) -> list[str]:
    """One recorded input, hashed by the writer's rule (xmodseg.training.inputs.input_sha256): a
    file by its sha256; a cache folder by its manifest's, and the files the manifest lists are
    checked too; another folder by the listing of its files' hashes."""
    path, what = rec.get("path"), f"input '{role}'"
    if not path:
        return [f"{what}: no path recorded"]
    full = hashes.repo / path
    if full.is_dir() and (full / MANIFEST).is_file():
        return [f"{what}: {p}" for p in _cache_problems(path, rec.get("sha256"), hashes, None)]
    if full.is_dir():
        from xmodseg.training.inputs import input_sha256

        actual = input_sha256(full)
        return [] if actual == rec.get("sha256") else [f"{what} {path}: folder sha256 {actual[:12]} differs from the record ({str(rec.get('sha256'))[:12]})"]
    return [p for p in (hashes.check(path, rec.get("sha256"), what),) if p]


def _inputs_link(sidecar: Mapping[str, Any] | None, hashes: _Hashes) -> Link:
    """Every declared input the sidecar records (`inputs: {role: {path, sha256}}`)."""
    inputs = (sidecar or {}).get("inputs") or {}
    problems = [p for role, rec in inputs.items() for p in _input_problems(role, rec or {}, hashes)]
    ok = ", ".join(f"{role} {rec.get('path')} sha256 {str(rec.get('sha256'))[:12]}" for role, rec in inputs.items())
    return _link("inputs", problems, ok or "no declared inputs")


def _all_cases(metrics: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The last iteration's cases and those of the earlier checkpoints (`checkpoints`), if any."""
    earlier = [c for p in (metrics.get("checkpoints") or {}).get("per_iteration", []) for c in p["cases"]]
    return [*metrics["cases"], *earlier]


def _predictions_link(metrics: Mapping[str, Any], hashes: _Hashes) -> Link:
    found: list[str | None] = []
    for case in _all_cases(metrics):
        found.append(hashes.check(case["prediction"], case.get("prediction_sha256"), "prediction"))
        if "prediction_preprocessed" not in case:
            found.append(f"case {case['case']}: no preprocessed-grid prediction stored (evaluated by an older version; rerun evaluate)")
            continue
        found.append(hashes.check(case["prediction_preprocessed"], case.get("prediction_preprocessed_sha256"), "prediction"))
        found.append(hashes.check(case["ground_truth_preprocessed"], case.get("ground_truth_preprocessed_sha256"), "cached ground truth"))
    problems = [p for p in found if p]
    n_checkpoints = len((metrics.get("checkpoints") or {}).get("per_iteration", []))
    return _link("predictions", problems, f"{len(metrics['cases'])} cases" + (f", and at {n_checkpoints} earlier checkpoints" if n_checkpoints else ""))


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, encoding="utf-8", errors="replace", check=False)


def _git_link(records: Sequence[Mapping[str, Any] | None], repo: Path) -> Link:
    problems, notes, missing = [], [], []
    for git in {json.dumps(r, sort_keys=True): r for r in records if r}.values():
        commit = git.get("commit")
        if not commit:
            missing.append("no git commit recorded (run outside a git checkout)")
            continue
        if _git(repo, "merge-base", "--is-ancestor", commit, "HEAD").returncode != 0:
            problems.append(f"recorded commit {commit[:12]} is not an ancestor of HEAD")
            continue
        notes.append(commit[:12] + (f" ({_dirty_note(git)})" if git.get("dirty") else ""))
    if problems:
        return _link("git", problems + missing, "")
    return _link("git", missing, ", ".join(notes) or "no record", unrecorded=True)


def _dirty_note(git: Mapping[str, Any]) -> str:
    """What was changed at run time: the recorded files (the first few) and how many in all."""
    files = [str(f) for f in git.get("dirty_files") or []]
    if not files:
        return "workspace was dirty at run time"
    count = int(git.get("dirty_count") or len(files))
    more = f" and {count - len(files)} more" if count > len(files) else ""
    return f"workspace was dirty at run time: {', '.join(files)}{more}"


def _reinfer_link(metrics: Mapping[str, Any], repo: Path, model_link: Link) -> Link:
    """Predict every test volume again with the stored model; compare voxel by voxel. Not done
    when `model_link` is broken: a model.pt that is not the recorded file may be a hostile one."""
    if not model_link.ok:
        model = metrics["provenance"]["model"]
        return Link("reinfer", False, f"not re-inferred: {model} is not loaded because its model link is broken ({model_link.detail})")
    import SimpleITK as sitk

    from xmodseg.evaluation.evaluate import load_prediction_grid
    from xmodseg.evaluation.inference import predict_slices, to_original_grid
    from xmodseg.nn.networks import load_model
    from xmodseg.training.device import choose_device

    prov = metrics["provenance"]
    device = choose_device("auto")
    net, _ = load_model(str(repo / prov["model"]), device)
    cache = repo / Path(prov["data_manifest"]).parent
    manifest = _load_json(cache / MANIFEST)
    records = {r["case"]: r for r in manifest["cases"]}
    problems = []
    for case in metrics["cases"]:
        rec = records[case["case"]]
        pred = predict_slices(net, np.load(cache / rec["image"], mmap_mode="r"), device)
        if "prediction_preprocessed" in case and not np.array_equal(pred, load_prediction_grid(repo / case["prediction_preprocessed"])):
            problems.append(f"case {case['case']}: re-inferred prediction differs from {case['prediction_preprocessed']}")
        stored = sitk.GetArrayFromImage(sitk.ReadImage(str(repo / case["prediction"])))
        if not np.array_equal(sitk.GetArrayFromImage(to_original_grid(pred, rec, manifest["slice_axis"])), stored):
            problems.append(f"case {case['case']}: re-inferred prediction differs from {case['prediction']}")
    return _link("reinfer", problems, f"{len(metrics['cases'])} volumes re-predicted identically on {device}")


# ---- values -------------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    fa, fb = float(a), float(b)
    return (math.isnan(fa) and math.isnan(fb)) or fa == fb


def _recompute_cases(metrics: Mapping[str, Any], repo: Path, cases: Sequence[Mapping[str, Any]] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Per-case values recomputed from the stored predictions and ground truth (`cases`: those of an
    earlier checkpoint instead of the last iteration's)."""
    from xmodseg.evaluation.evaluate import load_prediction_grid, score_case
    from xmodseg.imageio import read_image
    from xmodseg.labels import LabelMapping

    labels_rec = metrics["provenance"]["labels"]
    labels = LabelMapping.from_config(labels_rec["classes"], labels_rec["mapping"], labels_rec["ignore"])
    class_names = list(labels.class_names)
    out, problems = [], []
    for case in metrics["cases"] if cases is None else cases:
        try:
            pred = load_prediction_grid(repo / case["prediction_preprocessed"])
            cached_label = np.load(repo / case["ground_truth_preprocessed"])
            pred_img = read_image(repo / case["prediction"], kind="label")
            gt_img = read_image(repo / case["ground_truth"], kind="label")
            scores = score_case(pred, cached_label, pred_img, gt_img, labels, class_names, case["ground_truth"])
        except (OSError, KeyError, ValueError, InputDataError, RuntimeError) as exc:
            problems.append(f"case {case['case']}: cannot recompute ({exc})")
            return [], problems
        out.append({**case, **scores})
    return out, problems


def _recomputed_doc(metrics: Mapping[str, Any], path: str, repo: Path) -> tuple[dict[str, Any] | None, list[tuple[str, str, str]]]:
    """The metrics document rebuilt from recomputed cases, and (metric, class, message) mismatches
    against what the file states (per case and per-seed summary). A file evaluated under another
    protocol version is named as such: its values follow other definitions (v1 sifa_*)."""
    from xmodseg.evaluation.evaluate import LAST_K, LAST_K_METRICS, PROTOCOL, last_k_summary, summarise_cases

    cases, problems = _recompute_cases(metrics, repo)
    if problems:
        return None, [(m, "*", p) for m in METRIC_KEYS for p in problems]
    mismatches = []
    stated_protocol = (metrics.get("protocol") or {}).get("name")
    if stated_protocol != PROTOCOL["name"]:
        mismatches.append(("*", "*", f"value: {path} was evaluated under protocol {stated_protocol}, this code computes {PROTOCOL['name']}; rerun its evaluation"))
    fg = metrics["class_names"]
    for stored, new in zip(metrics["cases"], cases, strict=True):
        for key in METRIC_KEYS:
            for cls in fg:
                if not _same(stored[key][cls], new[key][cls]):
                    mismatches.append((key, cls, f"value: {path} case {stored['case']} {key} {cls} states {stored[key][cls]}, recomputed {new[key][cls]}"))
    summary = {key: summarise_cases(cases, key, fg) for key in METRIC_KEYS}
    checkpoints = metrics.get("checkpoints")
    if checkpoints:
        recomputed_iterations = []
        for it in checkpoints["per_iteration"]:
            new_cases, problems = _recompute_cases(metrics, repo, it["cases"])
            if problems:
                return None, [(m, "*", p) for m in METRIC_KEYS for p in problems]
            for stored, new in zip(it["cases"], new_cases, strict=True):
                for key in METRIC_KEYS:
                    for cls in fg:
                        if not _same(stored[key][cls], new[key][cls]):
                            msg = f"value: {path} checkpoint {it['iteration']} case {stored['case']} {key} {cls} states {stored[key][cls]}, recomputed {new[key][cls]}"
                            mismatches.append((f"{key}{LAST_K}" if key in LAST_K_METRICS else key, cls, msg))
            recomputed_iterations.append({"iteration": it["iteration"], "cases": new_cases})
        summary.update(last_k_summary(cases, recomputed_iterations, fg))
    for key in summary:
        for cls, stats in summary[key].items():
            stated = metrics["summary"].get(key, {}).get(cls)
            if stated is None:
                mismatches.append((key, cls, f"value: {path} summary has no {key} {cls}, recomputed {stats['mean']}"))
                continue
            for stat in ("mean", "std"):
                if not _same(stated[stat], stats[stat]):
                    mismatches.append((key, cls, f"value: {path} summary {key} {cls} {stat} states {stated[stat]}, recomputed {stats[stat]}"))
    doc: dict[str, Any] = {**metrics, "cases": cases, "summary": summary, "_path": path}
    if metrics.get("pooled"):  # GLUA's concatenated-volume numbers, from the same stored grids
        from xmodseg.evaluation.evaluate import pooled_metrics

        located = [{**c, **{k: str(repo / c[k]) for k in ("prediction_preprocessed", "ground_truth_preprocessed")}} for c in metrics["cases"]]
        pooled = pooled_metrics(located, ["background", *fg])
        keys = [k for k in ("sifa_dice", "sifa_assd_vox", "iou") if k in metrics["pooled"] or k != "iou"]  # iou: files since CaDIS
        for key in keys:
            for cls, value in pooled[key].items():
                stated = metrics["pooled"].get(key, {}).get(cls)
                if stated is None or not _same(stated, value):
                    mismatches.append((key, cls, f"value: {path} pooled {key} {cls} states {stated}, recomputed {value}"))
        doc["pooled"] = {**{k: pooled[k] for k in keys}, "definition": metrics["pooled"].get("definition", pooled["definition"]), "cases": pooled["cases"]}
    return doc, mismatches


# ---- the audit ----------------------------------------------------------------------------------


@dataclass
class _Target:
    """What PATH points at: the seed metrics files, and the files that state aggregated numbers."""

    seed_files: list[str]
    experiment_files: list[str] = field(default_factory=list)
    report_dir: Path | None = None


def resolve_target(path: str, repo: Path) -> _Target:
    p = Path(path)
    full = repo / p
    if full.is_dir() and (full / REPORT_CSV).is_file():
        p, full = p / REPORT_CSV, full / REPORT_CSV
    if full.name in (REPORT_CSV, REPORT_MD) and full.is_file():
        csv = pd.read_csv(full.with_name(REPORT_CSV), dtype=str, keep_default_na=False)
        seeds = list(dict.fromkeys(f for fs in csv["metrics_files"] for f in fs.split(";")))
        experiments = list(dict.fromkeys(csv["experiment"]))
        layout = Layout(_dataset(seeds[0], repo)) if seeds else None
        exp_files = [layout.experiment_metrics(e) for e in experiments] if layout else []
        return _Target(seeds, [f for f in exp_files if (repo / f).is_file()], full.parent)
    if full.is_file() and full.suffix == ".json":
        doc = _load_json(full)
        if "metrics_files" in doc:
            return _Target(list(doc["metrics_files"]), [p.as_posix()])
        if "cases" in doc and "provenance" in doc:
            return _Target([p.as_posix()])
        raise InputDataError(f"{p}: neither an experiment metrics file nor a per-seed metrics.json")
    matches = sorted(repo.glob(Layout("*").experiment_metrics(path)))
    if len(matches) == 1:
        rel = matches[0].relative_to(repo).as_posix()
        return _Target(list(_load_json(matches[0])["metrics_files"]), [rel])
    raise InputDataError(f"{path}: not a report (summary.md/csv), a metrics file, or a known experiment name")


REPORT_CSV, REPORT_MD = Path(PATTERNS["report_csv"]).name, Path(PATTERNS["report_md"]).name


def _dataset(seed_file: str, repo: Path) -> str:
    """The data set of a per-seed metrics file: its experiment record says, else its place in the
    layout."""
    full = repo / seed_file
    dataset = (_load_json(full).get("experiment") or {}).get("dataset") if full.is_file() else None
    return str(dataset or (match("seed_metrics", seed_file) or {}).get("dataset", ""))


def _fmt6(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.6f}"


def _parse_markdown(md: str) -> dict[tuple[str, str, str, str], dict[str, str]]:
    """{(section title, method label, direction, labels): {column: cell}} of the summary's tables:
    one cell per class, and the `labels` (label budget) cell, which tells apart rows of one method
    and direction at different label budgets (a label-fraction sweep)."""
    cells: dict[tuple[str, str, str, str], dict[str, str]] = {}
    section = ""
    header: list[str] = []
    for line in md.splitlines():
        if line.startswith("## "):
            section, header = line[3:].strip(), []
        elif line.startswith("|") and not line.startswith("|---"):
            parts = [c.strip() for c in line.strip().strip("|").split("|")]
            if parts[:2] == ["method", "direction"]:
                header = parts
            elif header and len(parts) == len(header):
                row = dict(zip(header[2:], parts[2:], strict=True))
                row.pop("seeds", None)
                cells[(section, parts[0], parts[1], row.get("labels", ""))] = row
    return cells


def _md_row(cells: Mapping[tuple[str, str, str, str], dict[str, str]], key: tuple[str, str, str], labels: str) -> dict[str, str]:
    """The summary.md row of (section, method, direction) at `labels`; else the only row of that
    method and direction (so a stated budget that differs is reported as such); else {}."""
    exact = (key[0], key[1], key[2], labels)
    if exact in cells:
        return cells[exact]
    candidates = [row for k, row in cells.items() if k[:3] == key]
    return candidates[0] if len(candidates) == 1 else {}


def _pooled_cells(md: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """{(table, method label, direction): row} of the report's pooled section (its `### ` tables)."""
    from xmodseg.reporting.report import POOLED_HEADING

    start = md.find(POOLED_HEADING)
    if start < 0:
        return {}
    section = md[start:].split("\n## ", 1)[0]
    cells: dict[tuple[str, str, str], dict[str, str]] = {}
    for block in section.split("\n### ")[1:]:
        title = block.splitlines()[0].strip()
        for (_, method, direction, _labels), row in _parse_markdown("## x\n" + block).items():
            cells[(title, method, direction)] = row
    return cells


def _pooled_problems(docs: list[dict[str, Any]], md: str, md_name: str) -> list[str]:
    """The report's pooled tables against the same tables made from the recomputed seed documents."""
    from xmodseg.artifacts.metrics import MetricsDoc
    from xmodseg.reporting.report import pooled_section

    expected = _pooled_cells(pooled_section([MetricsDoc.coerce(d) for d in docs]))
    stated = _pooled_cells(md)
    problems = []
    for key, row in expected.items():
        if stated.get(key) != row:
            problems.append(f"value: {md_name} {key[0]} {key[1]} {key[2]} states {stated.get(key)}, recomputed {row}")
    return problems


def _section_rows(md: str, heading: str) -> list[str] | None:
    """The table rows (lines starting `|`) of the `heading` section of `md`; None without it."""
    start = md.find(heading + "\n")
    if start < 0:
        return None
    section = md[start + len(heading) :].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("|")]


def _remade_problems(docs: list[dict[str, Any]], md: str, md_name: str, report_dir: Path, rel: Any) -> list[str]:
    """The headline and per-volume sections and per_case.csv against the same made from the
    recomputed documents. A report written before a section existed has nothing to check there."""
    from xmodseg.artifacts.metrics import MetricsDoc
    from xmodseg.reporting.per_case import FILE, per_case_csv
    from xmodseg.reporting.report import audited_sections

    coerced = [MetricsDoc.coerce(d) for d in docs]
    problems = []
    for heading, text in audited_sections(coerced).items():
        stated = _section_rows(md, heading)
        if stated is None:
            continue
        expected = _section_rows(text, heading) or []
        for row in expected:
            if row not in stated:
                problems.append(f"value: {md_name} '{heading[3:]}' lacks the recomputed row {row!r}")
        problems += [f"value: {md_name} '{heading[3:]}' states the row {row!r}, not recomputed" for row in stated if row not in expected]
    csv_path = report_dir / FILE
    if csv_path.is_file():
        stated_lines, expected_lines = csv_path.read_text().splitlines(), per_case_csv(coerced).splitlines()
        if stated_lines != expected_lines:
            diff = next((f"line {i + 1}: states {a!r}, recomputed {b!r}" for i, (a, b) in enumerate(zip(stated_lines, expected_lines)) if a != b), f"{len(stated_lines)} lines, recomputed {len(expected_lines)}")
            problems.append(f"value: {rel(csv_path)} {diff}")
    return problems


def audit(path: str, *, repo: str | os.PathLike[str] = ".", reinfer: bool = False) -> AuditResult:
    from xmodseg.artifacts.metrics import METRIC_KEYS as TITLES
    from xmodseg.reporting.report import format_cell, long_table, round6, seed_summary

    root = Path(repo)
    target = resolve_target(path, root)
    hashes = _Hashes(root)
    lock = DvcLock(root)
    links: dict[str, list[Link]] = {}
    docs: list[dict[str, Any]] = []
    bad_values: dict[tuple[str, str, str], list[str]] = {}
    broken_by_exp: dict[str, list[str]] = {}
    unrecorded_by_exp: dict[str, list[str]] = {}

    for f in target.seed_files:
        metrics = _load_json(root / f)
        exp = metrics["experiment"]["name"]
        model = metrics["provenance"]["model"]
        sidecar_path = root / sidecar_of(model)
        sidecar = _load_json(sidecar_path) if sidecar_path.is_file() else None
        model_link = _model_link(metrics, sidecar, hashes)
        seed_links = [_data_link(metrics, sidecar, hashes), model_link, _inputs_link(sidecar, hashes), _predictions_link(metrics, hashes)]
        seed_links.append(_lock_link(lock, [model, sidecar_of(model), f], f"model, sidecar and {Path(f).name} match"))
        seed_links.append(_git_link([metrics["provenance"].get("git"), ((sidecar or {}).get("provenance") or {}).get("git")], root))
        if reinfer:
            seed_links.append(_reinfer_link(metrics, root, model_link))
        doc, mismatches = _recomputed_doc(metrics, f, root)
        value_problems = [m for _, _, m in mismatches]
        seed_links.append(_link("value", list(dict.fromkeys(value_problems)), "per-case values and summary recomputed exactly"))
        for metric, cls, _msg in mismatches:
            bad_values.setdefault((exp, metric, cls), []).append("value")
        links[f] = seed_links
        broken_by_exp.setdefault(exp, []).extend(lk.name for lk in seed_links if lk.status == "BROKEN" and lk.name != "value")
        unrecorded_by_exp.setdefault(exp, []).extend(lk.name for lk in seed_links if lk.status == "UNRECORDED")
        if doc is not None:
            docs.append(doc)
    if not docs:
        return AuditResult([], links)

    summary = seed_summary(long_table(docs))

    for f in target.experiment_files:
        agg = _load_json(root / f)
        exp = agg["experiment"]
        exp_links = [_lock_link(lock, [f], f"{f} matches")]
        problems = []
        for _, r in summary[summary["experiment"] == exp].iterrows():
            stated = agg.get(r["metric"], {}).get(r["class"], {})
            for stat, value in (("mean", r["mean"]), ("std_over_seeds", r["std_over_seeds"])):
                if not _same(stated.get(stat), round6(value)):
                    problems.append(f"value: {f} {r['metric']} {r['class']} {stat} states {stated.get(stat)}, recomputed {round6(value)}")
                    bad_values.setdefault((exp, r["metric"], r["class"]), []).append("value")
        exp_links.append(_link("value", problems, "mean and std over seeds recomputed exactly"))
        links[f] = exp_links
        broken_by_exp.setdefault(exp, []).extend(lk.name for lk in exp_links if lk.status == "BROKEN" and lk.name != "value")
        unrecorded_by_exp.setdefault(exp, []).extend(lk.name for lk in exp_links if lk.status == "UNRECORDED")

    reported: dict[tuple[str, str, str], str] = {}
    if target.report_dir is not None:
        csv_path, md_path = target.report_dir / REPORT_CSV, target.report_dir / REPORT_MD
        rel = lambda p: os.path.relpath(p, root)  # noqa: E731
        csv = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        stated_csv = {(r["experiment"], r["metric"], r["class"]): r for _, r in csv.iterrows()}
        md_cells = _parse_markdown(md_path.read_text()) if md_path.is_file() else {}
        report_problems = []
        for _, r in summary.iterrows():
            key = (r["experiment"], r["metric"], r["class"])
            row = stated_csv.get(key)
            if row is None or row["mean"] != _fmt6(r["mean"]) or row["std_over_seeds"] != _fmt6(r["std_over_seeds"]):
                report_problems.append(f"value: {rel(csv_path)} {' '.join(key)} states {None if row is None else row['mean']}, recomputed {_fmt6(r['mean'])}")
                bad_values.setdefault(key, []).append("value")
            elif row.get("labels") != r["labels"]:
                report_problems.append(f"labels: {rel(csv_path)} {' '.join(key)} states {row.get('labels')!r}, the metrics provenance says {r['labels']!r}")
                bad_values.setdefault(key, []).append("value")
            std = r["std_over_seeds"] if r["n_seeds"] > 1 else r["volume_std"]
            expected_cell = format_cell(r["mean"], std, int(r["n_undefined"]))
            direction = direction_label(r["source"], r["target"])
            md_row = _md_row(md_cells, (TITLES[r["metric"]], r["method"], direction), r["labels"])
            cell = md_row.get(r["class"])
            if cell != expected_cell:
                report_problems.append(f"value: {rel(md_path)} {TITLES[r['metric']]} {r['method']} {direction} {r['class']} states {cell!r}, recomputed {expected_cell!r}")
                bad_values.setdefault(key, []).append("value")
            elif md_row.get("labels") != r["labels"]:
                report_problems.append(f"labels: {rel(md_path)} {TITLES[r['metric']]} {r['method']} {direction} states {md_row.get('labels')!r}, the metrics provenance says {r['labels']!r}")
                bad_values.setdefault(key, []).append("value")
            reported[key] = row["mean"] if row is not None else "missing"
        md_text = md_path.read_text() if md_path.is_file() else ""
        report_problems += _pooled_problems(docs, md_text, rel(md_path))
        report_problems += _remade_problems(docs, md_text, rel(md_path), target.report_dir, rel)
        report_lock = _lock_link(lock, [rel(csv_path), rel(md_path)], "summary.csv and summary.md match")
        links[rel(csv_path)] = [report_lock, _link("value", report_problems, "every table cell recomputed exactly")]
        for exp in summary["experiment"].unique():
            (broken_by_exp if report_lock.status == "BROKEN" else unrecorded_by_exp).setdefault(exp, []).extend([] if report_lock.ok else ["dvc.lock"])

    if not reported:
        exp_docs = {_load_json(root / f)["experiment"]: _load_json(root / f) for f in target.experiment_files}
        stated_seed = seed_summary(long_table([{**_load_json(root / f), "_path": f} for f in target.seed_files]))
        for _, r in stated_seed.iterrows():
            key = (r["experiment"], r["metric"], r["class"])
            if r["experiment"] in exp_docs:
                value = exp_docs[r["experiment"]].get(r["metric"], {}).get(r["class"], {}).get("mean")
                reported[key] = "" if value is None else _fmt6(float(value))
            else:
                reported[key] = _fmt6(r["mean"])
    rows = []
    for _, r in summary.iterrows():
        key = (r["experiment"], r["metric"], r["class"])
        broken = broken_by_exp.get(r["experiment"], []) + bad_values.get(key, [])
        rows.append(Row(r["experiment"], r["metric"], r["class"], reported.get(key, "missing"), _fmt6(r["mean"]), broken, unrecorded_by_exp.get(r["experiment"], [])))
    return AuditResult(rows, links)


def verdict_line(result: AuditResult) -> str:
    """The verdict first, with what to run next."""
    n, bad = len(result.rows), sum(1 for r in result.rows if r.broken)
    links = [lk for ls in result.links.values() for lk in ls]
    if result.verdict == "PASS":
        return f"PASS: all {n} reported numbers recomputed exactly; every link of their chains (data, model, predictions, dvc.lock, git) holds."
    if result.verdict == "UNRECORDED":
        what = sorted({lk.name for lk in links if lk.status == "UNRECORDED"})
        return (f"UNRECORDED: all {n} numbers recomputed exactly from the stored files, but the run is not recorded ({', '.join(what)}): "
                "run `xmodseg record` after committing your code to make them provable.")
    names = sorted({lk.name for lk in links if lk.status == "BROKEN"})
    hint = ""
    if any("missing" in lk.detail or "not found" in lk.detail or "dvc pull" in lk.detail for lk in links if lk.status == "BROKEN"):
        hint = (" Files are missing: on a fresh clone run `xmodseg restore` (dvc pull); if the DVC remote lives elsewhere, "
                "point to it first: `dvc remote modify --local local url /path/to/xmodseg-dvc-remote`.")
    return f"FAIL: {bad} of {n} numbers have a broken link ({', '.join(names) or 'value'}); the chain table below names each.{hint}"


def format_result(result: AuditResult, brief: bool = False) -> str:
    """The verdict first; then (unless `brief`: only the links that are not ok) the chain table per
    audited file and one row per reported number."""
    lines = [verdict_line(result), ""]
    shown = [(f, lk) for f, ls in result.links.items() for lk in ls if not (brief and lk.ok)]
    if shown:
        lines += ["## Chain", "", "| file | link | status | detail |", "|---|---|---|---|"]
        lines += [f"| {f} | {lk.name} | {lk.status} | {lk.detail} |" for f, lk in shown]
    if not brief:
        lines += ["", "## Reported numbers", "", "| experiment | metric | class | reported | recomputed | status |", "|---|---|---|---|---|---|"]
        for r in result.rows:
            lines.append(f"| {r.experiment} | {r.metric} | {r.cls} | {r.reported} | {r.recomputed} | {r.status} |")
    n_bad = sum(1 for r in result.rows if r.broken)
    n_unrec = sum(1 for r in result.rows if r.unrecorded and not r.broken)
    lines += ["", f"{len(result.rows)} numbers, {len(result.rows) - n_bad - n_unrec} ok, {n_bad} broken"
              + (f", {n_unrec} unrecorded" if n_unrec else "") + f": {result.verdict}"]
    return "\n".join(lines)
