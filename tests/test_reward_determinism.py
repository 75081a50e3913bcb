"""Verdicts do not depend on the machine's load or on a cold start: the grader never reads the clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def symbolic_cases() -> list[tuple[str, str]]:
    """A few hundred pairs that need the symbolic stage (polynomials, radicals, trig, equations), half equal."""
    cases = []
    for a in range(1, 6):
        for b in range(1, 6):
            cases.append((f"(x+{a})(x+{b})", f"x^2+{a + b}x+{a * b}"))
            cases.append((f"(x+{a})(x+{b})", f"x^2+{a + b}x+{a * b + 1}"))
            cases.append((rf"\frac{{{a}}}{{\sqrt{{{b + 1}}}}}", rf"\frac{{{a}\sqrt{{{b + 1}}}}}{{{b + 1}}}"))
            cases.append(
                (rf"\frac{{{a}}}{{\sqrt{{{b + 1}}}}}", rf"\frac{{{a + 1}\sqrt{{{b + 1}}}}}{{{b + 1}}}")
            )
            cases.append((rf"{a}\sin^2(t)+{a}\cos^2(t)", f"{a}"))
            cases.append((f"{a}x+{b}y={a + b}", rf"y=-\frac{{{a}}}{{{b}}}x+\frac{{{a + b}}}{{{b}}}"))
            cases.append((f"{a}x+{b}y={a + b}", rf"y=\frac{{{a}}}{{{b}}}x+\frac{{{a + b}}}{{{b}}}"))
            cases.append((rf"{a}+{b}i", rf"i({b}-{a}i)"))
    return cases


GRADE_ALL = textwrap.dedent(
    """
    import json, sys
    from trl_drgrpo.rewards.grader import grade
    cases = json.load(sys.stdin)
    print(json.dumps([grade("so \\\\boxed{" + p + "}", g) for p, g in cases]))
    """
)


def _grade_in_fresh_process(cases: list[tuple[str, str]]) -> list[float]:
    """Cold start: a new interpreter that has imported nothing but the grader."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", GRADE_ALL],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_same_verdicts_idle_and_beside_busy_processes_and_cold():
    from trl_drgrpo.rewards.grader import grade
    from trl_drgrpo.rewards.symbolic import _fast, _mv_parse, _read

    cases = symbolic_cases()
    assert len(cases) >= 200
    for cache in (_read, _fast, _mv_parse):
        cache.cache_clear()
    idle = [grade("so \\boxed{" + p + "}", g) for p, g in cases]
    # per (a, b): equal, unequal, equal, unequal, equal, equal, unequal, equal
    assert idle == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0] * (len(cases) // 8)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        loaded_cold = _grade_in_fresh_process(cases)  # saturated CPUs and a cold start at once
    finally:
        for p in busy:
            p.kill()
            p.wait()
    flips = [(c, a, b) for c, a, b in zip(cases, idle, loaded_cold, strict=True) if a != b]
    assert not flips


def test_cold_start_first_symbolic_grade_is_right():
    """The first symbolic grade of a fresh process (sympy still unimported) is decided like any other."""
    assert _grade_in_fresh_process([("1+x", "x+1"), ("1+x", "x+2")]) == [1.0, 0.0]
