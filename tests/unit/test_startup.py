"""Light commands import only what they use (issue 18). The command line, planning (the Snakefile's
typed config, `xmodseg dvc-yaml`) and the report read the methods' and translators' declarations
from a cache (xmodseg.plugins), never their modules, so none of them imports torch. Start-up times
are measured by benchmarks/bench_startup.py, not asserted here (a busy machine would fail them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO
from xmodseg.errors import ConfigError
from xmodseg.methods import METHODS
from xmodseg.translation.registry import TRANSLATORS

HEAVY = "[m for m in ('torch', 'monai', 'SimpleITK', 'matplotlib', 'pandas') if m in sys.modules]"


def _run(code: str, *, cwd: Path = REPO, pythonpath: Path | None = None) -> object:
    """Run `code` in a fresh interpreter; it prints one JSON value as its last line."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _warm() -> None:
    """What the first planning after a code change does: discover the modules, fill the caches."""
    _run("from xmodseg.methods import METHODS; from xmodseg.translation.registry import TRANSLATORS; METHODS.declared; TRANSLATORS.declared; print(1)")


@pytest.mark.parametrize(
    "module",
    ["xmodseg.cli", "xmodseg.reporting.report", "xmodseg.provenance.dvc_stages", "xmodseg.datasets.fetch", "xmodseg.config.resolve", "xmodseg.layout"],
)
def test_light_modules_import_no_torch(module):
    loaded = _run(f"import sys, json, {module}; print(json.dumps({HEAVY}))")
    assert "torch" not in loaded and "monai" not in loaded, f"importing {module} imports {loaded}"


def test_the_parser_builds_without_heavy_packages():
    loaded = _run(f"""
        import sys, json
        from xmodseg.cli import build_parser
        args = build_parser().parse_args(["aggregate", "--metrics", "m.json", "--out", "o.json"])
        assert args.func.__name__ == "cmd_aggregate"
        print(json.dumps({HEAVY}))
    """)
    assert loaded == []


def test_planning_and_dvc_yaml_read_declarations_without_torch():
    _warm()
    out = _run(f"""
        import sys, json
        from xmodseg.provenance.dvc_stages import load_config, render_dvc_yaml, typed_config
        cfg = typed_config(load_config("config/config.yaml"))  # what workflow/rules/common.smk builds
        text = render_dvc_yaml("config/config.yaml")
        print(json.dumps({{"loaded": {HEAVY}, "experiments": sorted(cfg.experiments), "stages": text.count("cmd:")}}))
    """)
    assert "torch" not in out["loaded"] and "monai" not in out["loaded"], out
    assert "sifa_mr2ct" in out["experiments"] and out["stages"] > len(out["experiments"])


def test_the_report_reads_needs_without_torch():
    _warm()
    out = _run(f"""
        import sys, json
        from xmodseg.reporting import report
        flags = [report._is_adaptation("sifa"), report._is_adaptation("oracle"), report._declares_target_labels("oracle"),
                 report._declares_target_labels("sifa"), report._is_adaptation("no_such_method")]
        print(json.dumps({{"loaded": {HEAVY}, "flags": flags}}))
    """)
    assert "torch" not in out["loaded"], out
    assert out["flags"] == [True, False, True, False, False]


def test_cached_declarations_are_the_classes():
    _warm()
    cached = _run("""
        import sys, json
        from xmodseg.methods import METHODS
        from xmodseg.translation.registry import TRANSLATORS
        view = lambda d: {"needs": vars(d.needs), "inputs": {r: vars(s) for r, s in d.inputs.items()},
                          "translated_source": d.translated_source, "params": list(d.params)}
        out = {reg.kind: {n: view(reg.declared.get(n)) for n in reg.declared.names()} for reg in (METHODS, TRANSLATORS)}
        print(json.dumps({"torch": "torch" in sys.modules, **out}))
    """)
    assert cached.pop("torch") is False
    # The classes, imported in a fresh interpreter too: this one holds the test modules' own methods.
    classes = _run("""
        import dataclasses, json
        from xmodseg.methods import METHODS
        from xmodseg.translation.registry import TRANSLATORS
        view = lambda c: {"needs": dataclasses.asdict(c.needs), "inputs": {r: dataclasses.asdict(s) for r, s in c.inputs.items()},
                          "translated_source": c.translated_source, "params": c.params_type.field_names()}
        print(json.dumps({reg.kind: {n: view(reg.get(n)) for n in reg.names()} for reg in (METHODS, TRANSLATORS)}))
    """)
    assert cached == classes
    assert set(cached["method"]) >= {"source_only", "oracle", "translate_then_segment", "sifa"}


@pytest.mark.parametrize(("registry", "name"), [(METHODS, "sifa"), (METHODS, "oracle"), (TRANSLATORS, "cyclegan")])
def test_an_unknown_train_key_is_the_class_own_error(registry, name):
    block = {"iterations": 2, "lrr": 0.1}
    with pytest.raises(ConfigError) as from_class:
        registry.get(name).check_params(block, "experiments.x.train")
    with pytest.raises(ConfigError) as from_declaration:
        registry.declared.get(name).check_params(block, "experiments.x.train")
    assert str(from_declaration.value) == str(from_class.value) and "'lrr'" in str(from_class.value)
    registry.declared.get(name).check_params({"iterations": 2}, "experiments.x.train")  # valid: no error
    with pytest.raises(KeyError, match="unknown"):
        registry.declared.get("no_such_member")


MEMBER = '''
from toyplug import REG


@REG.register
class {cls}:
    name = "{name}"

    @classmethod
    def declaration(cls):
        return {{"name": "{name}", "needs": {{"target_labels": False}}, "inputs": {{}}, "translated_source": False,
                "params": {params}, "internal_params": {params} + ["seed"], "own_checks": False}}
'''
PROBE = """
    import sys, json, toyplug
    d = toyplug.REG.declared
    print(json.dumps({"names": d.names(), "params": list(d.get("alpha").params), "imported": sorted(m for m in sys.modules if m.startswith("toyplug."))}))
"""


def test_the_declaration_cache_follows_the_source(tmp_path):
    pkg = tmp_path / "toyplug"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('from xmodseg.plugins import Registry\n\nREG = Registry("toy", "toyplug", "xmodseg.tests.no_such_group")\n')
    (pkg / "alpha.py").write_text(MEMBER.format(cls="Alpha", name="alpha", params='["iterations", "lr"]'))

    def probe() -> dict:
        return _run(PROBE, cwd=tmp_path, pythonpath=tmp_path)  # type: ignore[return-value]

    assert probe() == {"names": ["alpha"], "params": ["iterations", "lr"], "imported": ["toyplug.alpha"]}  # cold: discovered
    assert (pkg / "__pycache__" / "toy-declarations.json").is_file()
    assert probe() == {"names": ["alpha"], "params": ["iterations", "lr"], "imported": []}  # warm: no member module imported
    (pkg / "alpha.py").write_text(MEMBER.format(cls="Alpha", name="alpha", params='["iterations", "lr", "beta"]'))
    assert probe()["params"] == ["iterations", "lr", "beta"]  # a changed module is read again
    (pkg / "gamma.py").write_text(MEMBER.format(cls="Gamma", name="gamma", params='["iterations"]'))
    assert probe()["names"] == ["alpha", "gamma"]  # so is a new one
    assert probe()["imported"] == []
    (pkg / "gamma.py").unlink()
    assert probe()["names"] == ["alpha"]  # and a removed one is gone


def test_the_command_line_lists_everyday_commands_apart_from_pipeline_steps(capsys):
    """No subcommand: the overview (exit 2), everyday verbs first; --version; every command has help."""
    from xmodseg import __version__
    from xmodseg.cli import EVERYDAY, build_parser, main

    assert main([]) == 2
    out = capsys.readouterr().out
    everyday, steps = ({line.split()[0] for line in part.splitlines() if line.startswith("  ")} for part in out.split("everyday commands:")[1].split("pipeline steps"))
    assert {"init-dataset", "check-data", "predict", "audit", "explain", "record", "restore", "list-cases"} <= everyday
    assert {"train", "evaluate", "preprocess"} <= steps and not everyday & steps
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"xmodseg {__version__}"
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        assert parser.description, name
        if name in EVERYDAY:
            assert parser.epilog and "xmodseg " + name in parser.epilog, name  # an example


def test_every_path_flag_names_the_role_of_its_file():
    """A flag that takes a file or folder shows what it is (CACHE_DIR, MODEL_PT, SOURCE_JSON, ...) in
    its help, not argparse's generic name for the flag (OUT, MARKER, ...)."""
    from xmodseg.cli import build_parser

    # flags whose own name does not say what the file is (--source-cache does: SOURCE_CACHE)
    path_like = {"out", "marker", "metrics", "files", "downloads", "path", "input", "output", "cache", "folder", "overlays", "translation", "anatomy",
                 "json", "oracle", "model", "train_log", "quality", "preview", "out_cache", "registry", "predictions", "overlay", "repo"}
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    checked = 0
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if action.dest in path_like and action.help != "==SUPPRESS==":
                checked += 1
                assert action.metavar and action.metavar != action.dest.upper(), f"xmodseg {name} {'/'.join(action.option_strings) or action.dest}: no role metavar"
    assert checked > 30
