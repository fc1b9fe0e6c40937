"""Start-up time of the light `xmodseg` commands and of a no-op `snakemake -n` (medians of N).

    python benchmarks/bench_startup.py -n 5                     # builds and runs a tiny project first (minutes)
    python benchmarks/bench_startup.py -n 5 --project DIR       # a finished project (the workflow tests' tiny config)
    python benchmarks/bench_startup.py -n 5 --project DIR --compare OLD_CHECKOUT   # before/after, interleaved

Issue 18's targets: a light job starts in <= 1 s, a no-op dry run after a run takes <= 3 s. Every
command runs in a fresh process with the checkout's `src/` first on PYTHONPATH, in a copy of the
project whose Snakefile and workflow/ are the checkout's (with `--compare`, one copy per checkout;
the runs are interleaved, so a busy machine slows both alike); one untimed round first fills the
caches, as the run before a dry run does. "start-up" rows give the command a missing input, so they
time its imports and argument handling up to the error; the other rows do the real job on the
project's files (evaluate and translation-check, which need torch, for comparison). `imports`
lists the heavy packages the command loaded.

Snakemake's SLURM executor plugin (installed where `sinfo` exists) asks the controller for its
config whenever Snakemake starts, and waits ~10 s when none answers: that is outside this project,
so the `import snakemake` row (the executor plugins included) shows Snakemake's own share.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "monai", "SimpleITK", "scipy", "pandas", "matplotlib", "nibabel")
DS = "tiny_synth"


def venv_path() -> str:
    """PATH with this interpreter's bin folder first: the rules call the `xmodseg` script by name."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def build_project(dest: Path) -> Path:
    """The workflow tests' tiny project (tests/workflow/test_workflow.py), run to completion."""
    sys.path.insert(0, str(REPO))
    from tests.conftest import make_tiny_project
    from tests.workflow.test_workflow import write_config

    wd = make_tiny_project(dest, {}, "unused.yaml")
    write_config(wd)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": venv_path()}
    print(f"running the tiny workflow in {wd} (minutes) ...", flush=True)
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/tiny.yaml"], cwd=wd, env=env, check=True, capture_output=True)
    return wd


def variant_project(project: Path, checkout: Path, dest: Path) -> Path:
    """A copy of the finished project with the checkout's Snakefile and workflow/ (mtimes kept)."""
    shutil.copytree(project, dest, symlinks=True)
    shutil.copy2(checkout / "Snakefile", dest / "Snakefile")
    shutil.rmtree(dest / "workflow")
    shutil.copytree(checkout / "workflow", dest / "workflow")
    return dest


def import_registry(project: Path, folder: Path) -> Path:
    """A registry whose data set imports the project's raw files as a user's folder (fetch-source, import)."""
    reg = yaml.safe_load((project / "config" / "tiny_datasets.yaml").read_text())["datasets"][DS]
    mods = {}
    for mod, m in reg["modalities"].items():
        layout = {"image": m["image"], "label": m["label"]}
        mods[mod] = {**m, "image": f"{mod}/{{case}}_image.nii.gz", "label": f"{mod}/{{case}}_label.nii.gz", "source": {"kind": "import", "importer": "folder", "layout": layout}}
    entry = {"root": str(folder / "raw"), "source": {"kind": "import"}, "labels": reg["labels"], "modalities": mods}
    path = folder / "import_datasets.yaml"
    path.write_text(yaml.safe_dump({"datasets": {"imported": entry}}))
    return path


def commands(project: Path, tmp: Path) -> list[tuple[str, list[str]]]:
    """(label, argv after `xmodseg`) of each timed command; paths relative to the project."""
    ev = sorted((project / "results" / "evaluation" / DS).glob("*/seed0/metrics.json"))
    metrics = [str(p.relative_to(project)) for p in ev]
    overlays = [str(p.with_name("overlay.npz").relative_to(project)) for p in ev]
    tr = project / "results" / "translators" / DS
    quality = [str(p.relative_to(project)) for p in sorted(tr.glob("*/seed0/quality.json"))]
    anatomy = [str(p.relative_to(project)) for p in sorted(tr.glob("*/seed0/anatomy.json"))]
    registry = import_registry(project, tmp)
    raw = str(project / "data" / "raw" / DS)
    missing = str(tmp / "missing")
    cmds: list[tuple[str, list[str]]] = [
        (f"{c} --help", [c, "--help"])
        for c in ("aggregate", "report", "dvc-yaml", "list-cases", "fetch-source", "import", "synth", "prepare-cache", "translation-check", "evaluate")
    ]
    cmds += [
        ("aggregate (one seed)", ["aggregate", "--metrics", metrics[0], "--out", str(tmp / "agg.json")]),
        ("report (metrics only)", ["report", "--metrics", *metrics, "--out", str(tmp / "report_plain")]),
        ("report (as the rule: plots, overlays)", ["report", "--metrics", *metrics, "--overlays", *overlays, "--translation", *quality,
                                                   "--anatomy", *anatomy, "--out", str(tmp / "report"), "--title", "bench"]),
        ("dvc-yaml", ["dvc-yaml", "--configfile", "config/tiny.yaml", "--out", str(tmp / "dvc.yaml")]),
        ("list-cases", ["list-cases", f"{raw}/ct_train", "--pattern", "ct_train_{case}_image.nii.gz"]),
        ("fetch-source (a user's folder)", ["fetch-source", "--registry", str(registry), "--dataset", "imported", "--modality", "ct",
                                            "--downloads", str(tmp / "dl"), "--marker", str(tmp / "ct.json"), "--path", raw]),
        ("import (3 cases)", ["import", "--registry", str(registry), "--dataset", "imported", "--modality", "ct", "--marker", str(tmp / "ct.json")]),
        ("synth start-up", ["synth", "--registry", missing, "--dataset", DS, "--modality", "ct"]),
        ("prepare-cache start-up", ["prepare-cache", "--registry", missing, "--dataset", DS, "--modality", "ct", "--out", str(tmp / "c")]),
    ]
    # The torch jobs, for comparison: they need torch, and MONAI only for a MONAI U-Net.
    for exp in ("sifa_ct2mr", "oracle_mr2ct"):
        ev = project / "results" / "evaluation" / DS / exp / "seed0"
        if (ev / "metrics.json").is_file():
            record = json.loads((ev / "metrics.json").read_text())["provenance"]["config"]
            out = tmp / exp
            cmds.append((f"evaluate ({exp}, as the rule)", [
                "evaluate", "--registry", "config/tiny_datasets.yaml", "--dataset", DS, "--model", f"results/models/{DS}/{exp}/seed0/model.pt",
                "--target-cache", f"data/prepared/{DS}/{record['target']}", "--predictions", str(out / "predictions"), "--metrics", str(out / "metrics.json"),
                "--overlay", str(out / "overlay.npz"), "--experiment", json.dumps(record), "--gpu", "0", "--gpu-slots", "0"]))
    for check in sorted((project / "results" / "translators" / DS).glob("*/seed0/anatomy.json"))[:1]:
        tname = check.parent.parent.name
        source = json.loads(check.parent.joinpath("model.json").read_text())["data"]["source"]["cache"]
        cmds.append((f"translation-check ({tname}, as the rule)", [
            "translation-check", "--translated-cache", f"data/translated/{DS}/{tname}/seed0", "--source-cache", source,
            "--reference-model", json.loads(check.read_text())["oracle_model"], "--out", str(tmp / "anatomy.json")]))
    return cmds


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    return time.perf_counter() - t0, proc


def heavy_imports(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True)
    found = {m.group(1) for m in re.finditer(r"\|\s+(\w+)$", proc.stderr, re.M)}
    return ",".join(h for h in HEAVY if h in found) or "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="repeats (median)")
    ap.add_argument("--project", type=Path, help="a finished tiny project (default: build and run one)")
    ap.add_argument("--compare", type=Path, help="another checkout (e.g. `git archive` of an older commit) to time alongside")
    args = ap.parse_args()
    tmp_root = Path(tempfile.mkdtemp(prefix="bench_startup-"))
    project = (args.project or build_project(tmp_root / "built")).resolve()
    checkouts = {"this checkout": REPO, **({"compare": args.compare.resolve()} if args.compare else {})}
    setups = {}
    for i, (label, checkout) in enumerate(checkouts.items()):
        wd = variant_project(project, checkout, tmp_root / f"project{i}")
        env = {**os.environ, "PYTHONPATH": str(checkout / "src"), "OMP_NUM_THREADS": "1", "PATH": venv_path()}
        setups[label] = (wd, env, commands(wd, Path(tempfile.mkdtemp(dir=tmp_root))))
    snakemake_rows = [
        ("import snakemake (incl. executor plugins)", [sys.executable, "-c", "import snakemake.cli"]),
        ("snakemake -n (no-op, after the run)", [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "config/tiny.yaml", "-n"]),
    ]
    rows = [row for row, _ in next(iter(setups.values()))[2]] + [row for row, _ in snakemake_rows]
    times: dict[tuple[str, str], list[float]] = {}
    notes: dict[tuple[str, str], str] = {}
    for rep in range(args.n + 1):  # rep 0 warms the caches (a first run after a code change fills the declaration cache)
        for r, row in enumerate(rows):
            for label, (wd, env, cmds) in setups.items():
                argv = [sys.executable, "-m", "xmodseg.cli", *cmds[r][1]] if r < len(cmds) else snakemake_rows[r - len(cmds)][1]
                seconds, proc = timed(argv, wd, env)  # fetch-source's row runs before import's, which reads its marker
                if rep > 0:
                    times.setdefault((row, label), []).append(seconds)
                else:
                    failed = proc.returncode != 0 and "start-up" not in row
                    failed |= row.startswith("snakemake -n") and "Nothing to be done" not in proc.stdout + proc.stderr
                    last = (proc.stderr or proc.stdout).strip().splitlines() or [""]
                    notes[(row, label)] = (heavy_imports(argv, wd, env) if "-c" not in argv else "") + (f" FAILED: {last[-1][:120]}" if failed else "")
    labels = list(setups)
    print(f"median of {args.n} (seconds){'' if len(labels) == 1 else ', interleaved'}; project {project}")
    print(f"{'command':50s} " + " ".join(f"{lab:>14s}" for lab in labels) + "   imports (" + ", ".join(labels) + ")")
    for row in rows:
        cells = " ".join(f"{statistics.median(times[(row, lab)]):14.2f}" for lab in labels)
        print(f"{row:50s} {cells}   " + " | ".join(notes.get((row, lab), "") for lab in labels))
    shutil.rmtree(tmp_root, ignore_errors=True)


if __name__ == "__main__":
    main()
