"""The README and docs/ name only things that exist; the check itself reports each kind of broken reference."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.docs_check import (
    REPO_ROOT,
    check,
    documents,
    github_slug,
    heading_ids,
    parse_markdown,
    unreachable_pages,
)


def test_readme_and_docs_name_only_what_exists() -> None:
    problems = check(documents())
    assert not problems, "\n".join(map(str, problems))


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    assert (REPO_ROOT / "docs").is_dir()
    assert unreachable_pages() == []


def test_readme_stays_a_front_door() -> None:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    first_screen = "\n".join(text.splitlines()[:40])
    assert "make install demo" in first_screen and "make test" in first_screen
    assert "GPU" in first_screen and "recipes/" in first_screen
    assert len(text.splitlines()) <= 200


@pytest.fixture
def fake_repo(tmp_path: Path) -> Path:
    """A folder that looks like the repository (its top-level entries linked), for synthetic pages."""
    for entry in REPO_ROOT.iterdir():
        if entry.name in ("README.md", "Makefile", "recipes", "trl_drgrpo", "benchmarks", "docs", "tests"):
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def write_page(root: Path, text: str) -> Path:
    page = root / "page.md"
    page.write_text(textwrap.dedent(text), encoding="utf-8")
    return page


def problems_by_line(root: Path, text: str) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for problem in check([write_page(root, text)], root=root):
        found.setdefault(problem.line, []).append(f"{problem.kind}: {problem.message}")
    return found


def test_the_check_reports_every_kind_of_broken_reference(fake_repo: Path) -> None:
    page = """\
        # A page

        Fine: [README](README.md), [its drop-in section](README.md#drop-in-use-from-python), [here](#a-page),
        ![plot](docs/analysis/demo_dynamics.png), [site](https://example.com/x.md), `make demo`, `--seed`.
        Broken link [gone](docs/no-such-page.md)
        Broken anchor [gone](README.md#no-such-heading)
        Broken image ![gone](docs/analysis/no_such_plot.png)
        Outside [up](../../etc/passwd)
        Lone flag `--no_such_option`

        ```bash
        make train RECIPE=recipes/qwen2.5-math-1.5b/drgrpo_r1.yaml NUM_PROCESSES=8
        make no-such-target
        trl-drgrpo evaluate --model m --template no --output_dir x
        trl-drgrpo evaluate --model m --no_such_flag 1
        trl-drgrpo no-such-command --x
        trl-drgrpo analyze dynamics runs/a --smooth 10
        trl-drgrpo analyze no-such-analysis runs/a
        python recipes/evaluate.py --merge a.json --output t.md --no_such_merge_flag
        accelerate launch recipes/train.py --config recipes/no-such-model/drgrpo.yaml
        python -m trl_drgrpo.demo.lab --arms grpo --no_such_lab_flag -- --learning_rate 1e-5
        ```

        ```python
        from trl_drgrpo import DrGRPOConfig, get_template
        from trl_drgrpo.objective import no_such_function
        import trl_drgrpo.no_such_module
        ```
        """
    found = problems_by_line(fake_repo, page)
    expected = {
        5: "link: docs/no-such-page.md: no such file",
        6: "anchor: README.md#no-such-heading: no heading",
        7: "link: docs/analysis/no_such_plot.png: no such file",
        8: "outside the repository",
        9: "flag: --no_such_option is an option of none",
        13: "make: make no-such-target",
        15: "flag: `trl-drgrpo evaluate` has no option --no_such_flag",
        16: "command: `trl-drgrpo no-such-command`: no such command",
        18: "command: `trl-drgrpo analyze no-such-analysis`: no such command",
        19: "flag: `recipes/evaluate.py` has no option --no_such_merge_flag",
        20: "path: recipes/no-such-model/drgrpo.yaml: no such file",
        21: "flag: `python -m trl_drgrpo.demo.lab` has no option --no_such_lab_flag",
        26: "import: trl_drgrpo.objective.no_such_function: trl_drgrpo.objective has no no_such_function",
        27: "import: trl_drgrpo.no_such_module: ",
    }
    assert sorted(found) == sorted(expected), found
    for line, fragment in expected.items():
        assert len(found[line]) == 1 and fragment in found[line][0], (line, found[line])


def test_make_targets_and_paths_in_spans_and_loops(fake_repo: Path) -> None:
    page = """\
        Run `make bias-lab` then `make no-such-span-target`; read `recipes/lab/bias_lab.yaml` and `tests/test_*.py`,
        not `recipes/lab/no_such.yaml` nor `tests/no_such_*.py`; `recipes/<model>/<experiment>.yaml` is a placeholder.

        ```bash
        for t in r1 no; do make eval TEMPLATE=$t; make no-such-loop-target; done   # make sure: prose, not checked
        ```
        """
    found = problems_by_line(fake_repo, page)
    assert sorted(found) == [1, 2, 5], found
    assert found[1] == [
        "make: make no-such-span-target: make: *** No rule to make target 'no-such-span-target'.  Stop."
    ]
    assert sorted(found[2]) == [
        "path: recipes/lab/no_such.yaml: no such file or folder",
        "path: tests/no_such_*.py: no such file or folder",
    ]
    assert len(found[5]) == 1 and "no-such-loop-target" in found[5][0]


def test_pages_that_quote_other_projects_flags_say_so(fake_repo: Path) -> None:
    page = "The paper runs `--critic_type drgrpo`; ours `--seed 1`.\n"
    assert problems_by_line(fake_repo, page) == {
        1: ["flag: --critic_type is an option of none of the project's commands"]
    }
    marked = "<!-- docs-check: foreign flags -->\n\n" + page
    assert problems_by_line(fake_repo, marked) == {}
    linked = "TRL's [`tests/test_grpo_trainer.py`](https://github.com/huggingface/trl) is not ours.\n"
    assert problems_by_line(fake_repo, linked) == {}


def test_code_spans_links_and_headings_are_parsed_like_github() -> None:
    doc = parse_markdown(
        "## Analysis: the paper's measurements (`trl-drgrpo analyze`)\n"
        "## A variant where wrong answers persist — also not significant\n"
        "## Setup\n## Setup\n"
        "| a `x \\| y` | [`code ](fake.md)` text](real.md) `wraps\nlines` |\n"
        "```bash\n[not a link](nowhere.md)\n```\n"
    )
    assert heading_ids(doc.headings) == {
        "analysis-the-papers-measurements-trl-drgrpo-analyze",
        "a-variant-where-wrong-answers-persist--also-not-significant",
        "setup",
        "setup-1",
    }
    assert github_slug("The reward (`trl_drgrpo.rewards`)") == "the-reward-trl_drgrporewards"
    assert doc.links == [(5, "real.md")]
    assert [(c.line, c.text, c.language) for c in doc.codes] == [
        (1, "trl-drgrpo analyze", None),
        (5, "x | y", None),
        (5, "code ](fake.md)", None),
        (5, "wraps lines", None),
        (8, "[not a link](nowhere.md)", "bash"),
    ]


def test_unreachable_pages_are_named(tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "README.md").write_text("[a](docs/a.md)\n")
    (tmp_path / "docs" / "a.md").write_text("[b](sub/b.md#x) [site](https://example.com/c.md)\n")
    (tmp_path / "docs" / "sub" / "b.md").write_text("# x\n")
    (tmp_path / "docs" / "orphan.md").write_text("[back](../README.md)\n")
    assert unreachable_pages(tmp_path) == ["docs/orphan.md"]


def test_a_target_left_only_in_phony_is_reported(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text(".PHONY: gone real\nreal:\n\techo real\n")
    page = write_page(tmp_path, "`make real` and `make gone`\n")
    problems = check([page], root=tmp_path)
    assert [(p.kind, p.message) for p in problems] == [
        ("make", "make gone: gone has no rule (nothing to be done)")
    ]
