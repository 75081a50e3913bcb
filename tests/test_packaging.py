"""Packaging: the extras cover what the recipes need, TRL is pinned to the tested minor series, and a recipe
whose tracker is not installed stops in its first second with one line."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trl_drgrpo.training.preflight import (
    TRACKER_EXTRAS,
    PreflightError,
    check_trackers,
    missing_trackers,
    option_values,
    preflight_train,
)

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (REPO / "recipes").glob("*/*.yaml"))


def _requirements() -> list[str]:
    return importlib.metadata.distribution("trl_drgrpo").requires or []


def _extras() -> dict[str, list[str]]:
    """extra name -> requirement strings (without the marker), from the installed package's metadata."""
    extras: dict[str, list[str]] = {}
    for requirement in _requirements():
        match = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        if match:
            extras.setdefault(match.group(1), []).append(requirement.split(";")[0].strip())
    return extras


def _report_to(recipe: Path) -> list[str]:
    value = yaml.safe_load(recipe.read_text()).get("report_to", "none")
    names = [value] if isinstance(value, str) else list(value or [])
    return [n for n in names if n != "none"]


def test_metadata_lists_the_tracker_and_gpu_extras():
    extras = _extras()
    for name in ("vllm", "deepspeed", "wandb", "trackio", "quantization", "dev"):
        assert name in extras, f"extra {name!r} missing; installed metadata has {sorted(extras)}"


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_every_recipe_tracker_is_covered_by_an_extra(recipe):
    extras = _extras()
    for tracker in _report_to(recipe):
        assert tracker in extras, (
            f"{recipe.name}: report_to {tracker} has no extra (pip install trl_drgrpo[...])"
        )
        assert any(req.startswith(tracker) for req in extras[tracker])


def test_gpu_extras_come_from_trls_own_extras_at_the_pinned_version():
    extras = _extras()
    trl_version = importlib.metadata.version("trl")
    minor = ".".join(trl_version.split(".")[:2])
    for name in ("vllm", "deepspeed", "quantization"):
        (requirement,) = extras[name]
        assert requirement.replace(" ", "").startswith(f"trl[{name}]"), requirement
        assert f"<{minor.split('.')[0]}.{int(minor.split('.')[1]) + 1}" in requirement, requirement
    # the core dependency: the installed TRL lies in the pinned minor series
    (trl_requirement,) = [r for r in _requirements() if r.startswith("trl") and "extra" not in r]
    from packaging.requirements import Requirement

    assert trl_version in Requirement(trl_requirement).specifier, (trl_requirement, trl_version)
    assert Requirement(trl_requirement).specifier.contains(f"{minor}.99")
    assert not Requirement(trl_requirement).specifier.contains(
        f"{minor.split('.')[0]}.{int(minor.split('.')[1]) + 1}.0"
    )


def test_console_scripts_are_declared():
    scripts = {
        ep.name: ep.value
        for ep in importlib.metadata.distribution("trl_drgrpo").entry_points
        if ep.group == "console_scripts"
    }
    assert scripts.get("trl-drgrpo") == "trl_drgrpo.cli:main"
    assert scripts.get("trl-drgrpo-tiny") == "trl_drgrpo.demo.tiny:main"


def test_missing_tracker_is_named_with_its_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    assert missing_trackers(["wandb"]) == ["wandb"]
    with pytest.raises(
        PreflightError, match=r'report_to names wandb.*pip install "trl_drgrpo\[wandb\]".*--report_to none'
    ):
        check_trackers("wandb")
    check_trackers("none")
    check_trackers(None)
    check_trackers(False)  # YAML `report_to: no`


def test_unknown_tracker_is_refused():
    with pytest.raises(PreflightError, match="unknown tracker 'wandbb'"):
        check_trackers(["wandbb"])


def test_option_values_reads_both_spellings():
    assert option_values(["--report_to", "wandb", "trackio", "--seed", "1"], "report_to") == [
        "wandb",
        "trackio",
    ]
    assert option_values(["--report_to=none"], "report_to") == ["none"]
    assert option_values(["--seed", "1"], "report_to") is None


def test_command_line_report_to_overrides_the_recipe(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in TRACKER_EXTRAS else real(name, *a)
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text("report_to: wandb\n")
    with pytest.raises(PreflightError, match="wandb"):
        preflight_train(["--config", str(recipe)])
    preflight_train(["--config", str(recipe), "--report_to", "none"])


def test_bad_recipe_files_are_one_line_errors(tmp_path):
    with pytest.raises(PreflightError, match="does not exist"):
        preflight_train(["--config", str(tmp_path / "missing.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(PreflightError, match="not valid YAML"):
        preflight_train(["--config", str(bad)])
    bad.write_text("- a\n- b\n")
    with pytest.raises(PreflightError, match="YAML mapping"):
        preflight_train(["--config", str(bad)])


@pytest.mark.parametrize("entry", [["-m", "trl_drgrpo.cli", "train"], [str(REPO / "recipes" / "train.py")]])
def test_recipe_run_without_its_tracker_stops_at_once(entry, tmp_path):
    """The real recipe, with its tracker hidden: one line, non-zero, before torch/TRL are imported."""
    hide = tmp_path / "hide"
    hide.mkdir()
    # A sitecustomize that makes `wandb` unimportable even where it is installed.
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['wandb'] = None\n")
    env = {**os.environ, "PYTHONPATH": str(hide), "HF_HUB_OFFLINE": "1"}
    recipe = REPO / "recipes" / "qwen2.5-math-1.5b" / "drgrpo_qwen_math.yaml"
    result = subprocess.run(
        [sys.executable, *entry, "--config", str(recipe)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "wandb" in lines[0] and "trl_drgrpo[wandb]" in lines[0]
    assert "Traceback" not in result.stderr


def test_tracker_check_happens_before_heavy_imports():
    """The preflight path imports neither torch nor TRL (what makes a failing run stop within a second)."""
    code = (
        "import sys\n"
        "from trl_drgrpo.cli import main\n"
        "rc = main(['train', '--config', sys.argv[1], '--report_to', 'wandbb'])\n"
        "heavy = sorted(m for m in ('torch', 'trl', 'transformers') if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )
    recipe = REPO / "recipes" / "qwen2.5-math-1.5b" / "drgrpo_qwen_math.yaml"
    result = subprocess.run(
        [sys.executable, "-c", code, str(recipe)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.stdout.strip() == "1 []", result.stdout + result.stderr
    assert "unknown tracker 'wandbb'" in result.stderr


@pytest.mark.parametrize(
    "recipe", [r for r in RECIPES if _report_to(r)], ids=lambda p: str(p.relative_to(REPO / "recipes"))
)
def test_tracked_recipes_keep_few_checkpoints_and_log_completions(recipe):
    config = yaml.safe_load(recipe.read_text())
    assert isinstance(config.get("save_total_limit"), int) and config["save_total_limit"] >= 1
    assert config.get("log_completions") is True


def test_every_extra_the_project_requests_is_provided():
    """pip only warns (on every install) when a requirement asks for an extra its package does not declare, and
    then installs without it: each ``pkg[extra]`` in pyproject.toml must name an extra of the installed ``pkg``,
    spelled as its metadata spells it."""
    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = [
        *project["dependencies"],
        *(s for group in project["optional-dependencies"].values() for s in group),
    ]
    checked = 0
    for spec in specs:
        requirement = Requirement(spec)
        if not requirement.extras or requirement.name.replace("-", "_") == "trl_drgrpo":
            continue
        try:
            provided = importlib.metadata.metadata(requirement.name).get_all("Provides-Extra") or []
        except importlib.metadata.PackageNotFoundError:
            continue
        missing = sorted(requirement.extras - set(provided))
        assert not missing, f"{spec}: {requirement.name} provides {sorted(provided)}, not {missing}"
        checked += 1
    assert checked, "no installed requirement with extras was checked"


def _package_imports() -> dict[str, set[str]]:
    """trl_drgrpo's modules -> the trl_drgrpo modules each imports, at the top or inside a function."""
    import ast

    root = Path(__file__).resolve().parents[1] / "trl_drgrpo"
    paths = {
        ".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in root.rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                found |= {
                    f"{module}.{a.name}" if f"{module}.{a.name}" in paths else module for a in node.names
                }
        graph[name] = {m for m in found if m in paths and m != name}
    return graph


def test_no_module_imports_itself_through_others():
    """Import circles between modules (lazy imports included; a package's __init__ re-exports are not counted)."""
    graph = _package_imports()
    inits = {n for n in graph if (Path(__file__).resolve().parents[1] / n.replace(".", "/")).is_dir()}
    circles = []
    for start in graph.keys() - inits:
        stack = [(start, (start,))]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node] - inits:
                if nxt == start:
                    circles.append(" -> ".join((*path, start)))
                elif nxt not in path:
                    stack.append((nxt, (*path, nxt)))
    assert not circles, circles


def test_evaluation_imports_nothing_above_it():
    """The evaluation subpackage is used by training and the analyses; it never imports them or the commands."""
    above = (
        "trl_drgrpo.analysis",
        "trl_drgrpo.cli",
        "trl_drgrpo.evaluate",
        "trl_drgrpo.demo",
        "trl_drgrpo.train",
    )
    graph = _package_imports()
    upward = sorted(
        f"{name} -> {target}"
        for name, targets in graph.items()
        if name.startswith("trl_drgrpo.evaluation")
        for target in targets
        if target.startswith(above)
    )
    assert not upward, upward
