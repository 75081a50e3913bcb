"""Agreement of our grader and of plain Math-Verify with labels that others wrote, and on the suite's golds.

Part 1 -- other projects' grader test cases (``tests/data/grader_external_cases.jsonl``: each case cites its
source repository, file, test and commit). The source's label is the reference. A case whose response is prose
with no ``\\boxed{}`` is out of scope for a reward that, like the paper's, needs a boxed (or tagged) answer: it is
counted apart. Cases whose label rests on a convention where ours differs (the conventions table of docs/reward.md) are listed in
``CONVENTIONS`` and reported apart too.

Part 2 -- rewrites of the evaluation suite's golds: for every gold answer of the five benchmarks we write
responses provably equal to it (integer "1,000" style, leading zeros, n/1, n.0, fraction <-> terminating
decimal, scientific notation, ``\\dfrac``, spacing, ``x =`` prefix, ``$`` wrappers, ``\\text`` units, reordered
sums) labelled 1, and provably unequal (off-by-one, sign flip, inverted fraction, x2 scale, last-digit change,
dropped term) labelled 0, plus pathological responses labelled 0.

Both graders run in killable worker processes with a hard per-case timeout (reported apart).

    python benchmarks/grader_agreement.py [--part external|suite|both] [--limit N] [--workers 2] [--timeout 10]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SUITE = REPO.parent / "shared" / "data" / "evaluation_suite"
EXCEPTION = -1.0  # score code returned by the workers when a grader raised


@dataclass
class Case:
    response: str
    gold: Any
    label: int
    kind: str
    source: str


def boxed(answer: str) -> str:
    return f"We simplify step by step and check the result.\nTherefore the final answer is $\\boxed{{{answer}}}$."


# ---------------------------------------------------------------------------------------------------------------
# Graders run in the workers (module-level so they can be pickled by reference)
# ---------------------------------------------------------------------------------------------------------------


def ours(response: str, gold: Any) -> float:
    from trl_drgrpo.rewards.grader import grade

    try:
        return grade(response, gold, "qwen_math")
    except Exception:
        return EXCEPTION


def ours_answer(answer: str, gold: Any) -> float:
    """Our grader on an answer given bare (no response around it)."""
    from trl_drgrpo.rewards.grader import grade_answer

    try:
        return grade_answer(answer, gold)
    except Exception:
        return EXCEPTION


def ours_external(pred: str, gold: Any) -> float:
    """A boxed response goes through extraction (the paper's rules); a bare answer is graded as it is."""
    return ours(pred, gold) if "\\boxed" in pred else ours_answer(_strip_delimiters(pred), gold)


def math_verify_external(pred: str, gold: Any) -> float:
    """Plain Math-Verify as its own tests call it: ``verify(parse(gold), parse(pred))``, default settings."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    try:
        return float(bool(verify(parse(gold), parse(pred))))
    except Exception:
        return EXCEPTION


def math_verify_plain(response: str, gold: Any) -> float:
    """Plain Math-Verify: ``parse`` both sides with default settings and ``verify``; any gold may match."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    try:
        golds = gold if isinstance(gold, list) else [gold]
        pred = parse(response)
        for g in golds:
            g = str(g).strip()
            g = g if g.startswith("$") else f"${g}$"
            if verify(parse(g), pred):
                return 1.0
        return 0.0
    except Exception:
        return EXCEPTION


# ---------------------------------------------------------------------------------------------------------------
# Part 1: other projects' cases
# ---------------------------------------------------------------------------------------------------------------

EXTERNAL = REPO / "tests" / "data" / "grader_external_cases.jsonl"
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\[", "\\]"), ("\\(", "\\)"))

# id -> why the source's label rests on a convention where this project's conventions (docs/reward.md) differ.
_LAST_BOX = "the paper's rule reads only the LAST \\boxed{} of a response"
CONVENTIONS: dict[int, str] = {
    5: "a comma is never a decimal point",
    6: "a comma is never a decimal point",
    15: "a comma is never a decimal point",
    127: "a rounded decimal (0.33) is not an exact value (1/3): relative tolerance 1e-4",
    156: "an ordered pair (1,3) is not the set {1,3}",
    185: "a list of answers is a multiset: a repeated element counts",
    182: "a gold's boxes are joined only across separators (commas, 'and'), not across other text",
    239: "a gold's boxes are joined only across separators (commas, 'and'), not across other text",
    **{i: _LAST_BOX for i in (166, 177, 197, 225, 226, 227, 229, 231, 232, 236, 237, 238)},
}


def _strip_delimiters(text: str) -> str:
    t = text.strip()
    for left, right in _DELIMITERS:
        if t.startswith(left) and t.endswith(right) and len(t) >= len(left) + len(right):
            return t[len(left) : len(t) - len(right)].strip()
    return t


def is_prose(text: str) -> bool:
    """Free text with no boxed answer: out of scope for a reward that needs ``\\boxed{}`` (or, for a gold, that
    reads a gold as an answer)."""
    if "\\boxed" in text:
        return False
    inner = _strip_delimiters(text)
    if any(d in inner for d in ("$", "\\(", "\\[")):
        return True
    bare = re.sub(r"\\[A-Za-z]+\s*(\{[^{}]*\})?", " ", inner)
    return len(re.findall(r"[A-Za-z]{2,}", bare)) >= 3


def load_external() -> list[dict]:
    return [json.loads(line) for line in EXTERNAL.read_text().splitlines() if line.strip()]


def external_report(workers: int, timeout: float, show: int) -> None:
    cases = load_external()
    sources = Counter(f"{c['source_repo']}:{c['source_path']}" for c in cases)
    print(f"{len(cases)} cases from {len(sources)} files: {dict(sources)}")
    scope = [not is_prose(c["pred"]) and not is_prose(c["gold"]) for c in cases]
    results = {}
    for name, fn in (("ours", ours_external), ("plain Math-Verify", math_verify_external)):
        results[name] = run_grader(
            name, fn, [Case(c["pred"], c["gold"], c["expected"], "", "") for c in cases], workers, timeout
        )
    print(
        f"in scope (a boxed or bare answer): {sum(scope)}; prose without a box (out of scope): {len(cases) - sum(scope)}"
    )
    for name, result in results.items():
        scores = [1 if s == 1.0 else 0 for s in result["scores"]]
        subsets = {
            "in scope": [i for i in range(len(cases)) if scope[i]],
            "in scope, non-convention": [
                i for i in range(len(cases)) if scope[i] and cases[i]["id"] not in CONVENTIONS
            ],
            "all (prose included)": list(range(len(cases))),
        }
        print(f"\n== {name} ==")
        for title, idx in subsets.items():
            agree = sum(scores[i] == cases[i]["expected"] for i in idx)
            wrong_accepts = sum(scores[i] == 1 and cases[i]["expected"] == 0 for i in idx)
            print(
                f"{title}: agreement {100 * agree / len(idx):.2f}% ({agree}/{len(idx)}), wrong accepts {wrong_accepts}"
            )
        durations = result["durations"]
        slowest = max(range(len(cases)), key=durations.__getitem__)
        print(
            f"max time per case {durations[slowest]:.2f} s (#{cases[slowest]['id']}); "
            f"hard timeouts {sum(result['timeouts'])}"
        )
        shown = 0
        for i in subsets["in scope"]:
            if scores[i] != cases[i]["expected"] and shown < show:
                shown += 1
                c = cases[i]
                tag = f" [convention: {CONVENTIONS[c['id']]}]" if c["id"] in CONVENTIONS else ""
                print(
                    f"  #{c['id']} {c['source_test']}: gold={c['gold'][:80]!r} pred={c['pred'][:80]!r} "
                    f"label={c['expected']} got={scores[i]}{tag}"
                )


# ---------------------------------------------------------------------------------------------------------------
# Part 2: suite gold rewrites
# ---------------------------------------------------------------------------------------------------------------

_INT = re.compile(r"-?\d+")
_DEC = re.compile(r"-?(?:\d+\.\d*|\.\d+)")
_FRAC = re.compile(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}")
_SCI = re.compile(r"(-?\d+(?:\.\d+)?)\s*\\times\s*10\^\{?(-?\d+)\}?")
_E_SCI = re.compile(r"(-?\d+(?:\.\d+)?)[eE]([-+]?\d+)")  # "3.61e-10": scientific, not a sum with Euler's e


def _top_level_split(s: str, seps: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for i, c in enumerate(s):
        depth += c in "([{"
        depth -= c in ")]}"
        if depth == 0 and c in seps and i > 0 and s[i - 1] not in "^_\\{(":
            parts.append(cur)
            cur = c
        else:
            cur += c
    parts.append(cur)
    return parts


def _with_thousands(n: int) -> str:
    return f"{n:,}"


def _decimal_str(f: Fraction) -> str | None:
    """Terminating decimal of f, or None."""
    den = f.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den != 1:
        return None
    d = Decimal(f.numerator) / Decimal(f.denominator)
    return format(d.normalize(), "f")


def _int_cases(n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    pos = [
        (str(n), "identity"),
        (f"{n}.0", "n.0"),
        (rf"\frac{{{n}}}{{1}}", "n/1"),
        (f"{n}/1", "n/1 plain"),
        (f"x = {n}", "x= prefix"),
        (f"${n}$", "$ wrapper"),
        (rf"{n} \text{{ units}}", "text unit"),
        (rf"\, {n} \,", "spacing macros"),
    ]
    if n >= 0:
        pos.append((f"00{n}", "leading zeros"))
    if abs(n) >= 1000:
        pos.append((_with_thousands(n), "thousands"))
        pos.append((_with_thousands(n).replace(",", ",\\!"), "thousands \\!"))
    neg = [(str(n + 1), "off-by-one +1"), (str(n - 1), "off-by-one -1"), (f"{n}.5", "n.5")]
    if n != 0:
        neg.append((str(-n), "sign flip"))
        neg.append((str(n * 10), "x10"))
    return pos, neg


def _fraction_cases(sign: str, a: int, b: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    f = Fraction(a, b) * (-1 if sign else 1)
    pos = [
        (rf"{sign}\dfrac{{{a}}}{{{b}}}", "dfrac"),
        (f"{sign}{a}/{b}", "slash"),
        (rf"{sign}\frac{{{2 * a}}}{{{2 * b}}}", "unreduced"),
        (rf"{sign}\frac {a}{b}" if a < 10 and b < 10 else rf"{sign}\tfrac{{{a}}}{{{b}}}", "short/tfrac"),
    ]
    dec = _decimal_str(f)
    if dec is not None:
        pos.append((dec, "fraction->decimal"))
    neg = [
        (rf"{'' if sign else '-'}\frac{{{a}}}{{{b}}}", "sign flip"),
        (rf"{sign}\frac{{{a + 1}}}{{{b}}}", "off-by-one"),
    ]
    if a != b:
        neg.append((rf"{sign}\frac{{{b}}}{{{a}}}", "inverted fraction"))
    return pos, neg


def _decimal_cases(text: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    d = Decimal(text)
    f = Fraction(d)
    pos = [
        (text + "0", "trailing zero"),
        (rf"\frac{{{f.numerator}}}{{{f.denominator}}}", "decimal->fraction"),
    ]
    mantissa, exponent = f"{d:e}".split("e")
    pos.append((rf"{mantissa} \times 10^{{{int(exponent)}}}", "decimal->scientific"))
    last = max(i for i, c in enumerate(text) if c.isdigit() and c != "0") if d != 0 else None
    bumped = (
        text
        if last is None
        else text[:last] + ("8" if text[last] == "9" else str(int(text[last]) + 1)) + text[last + 1 :]
    )
    neg = [
        (bumped, "last digit"),
        (format(d * 2, "f"), "x2"),
        (format(-d, "f"), "sign flip") if d != 0 else (format(d + 1, "f"), "+1"),
    ]
    return pos, neg


def _sci_cases(m: re.Match) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    mant, exp = m.group(1), int(m.group(2))
    value = Decimal(mant).scaleb(exp)
    pos = [
        (f"{mant}e{exp}", "e-notation"),
        (rf"{mant} \cdot 10^{{{exp}}}", "cdot"),
        (f"{mant}\\times10^{{{exp}}}", "spacing"),
    ]
    if abs(exp) <= 6:
        pos.append((format(value, "f"), "sci->decimal"))
    neg = [
        (rf"{mant} \times 10^{{{exp + 1}}}", "exponent+1"),
        (rf"{Decimal(mant) / 2} \times 10^{{{exp}}}", "half (2.6e-27 vs 1.3e-27)"),
        (rf"-{mant} \times 10^{{{exp}}}", "sign flip"),
    ]
    return pos, neg


def _without_spaces(g: str) -> str:
    """Drop spaces, except the one ending a command before a letter ("\\pi r" must not become "\\pir")."""
    g = re.sub(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])", "\\1\x01", g)
    return re.sub(r"\s+", "", g).replace("\x01", " ")


def _generic_cases(g: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    pos = [(g, "identity"), (f"${g}$", "$ wrapper"), (_without_spaces(g), "no spaces")]
    if "\\frac" in g:
        pos.append((g.replace("\\frac", "\\dfrac"), "dfrac"))
    if "," not in g and "=" not in g and "\\begin" not in g:
        if "\\text" not in g:
            pos.append((f"x = {g}", "x= prefix"))
        pos.append((rf"\left( {g} \right)", "left/right parens"))
    terms = _top_level_split(g, "+-")
    neg = []
    if (
        len(terms) >= 2
        and "\\begin" not in g
        and "," not in g
        and "=" not in g
        and "\\pm" not in g
        and "<" not in g
        and ">" not in g
    ):
        first, last = terms[0].strip(), terms[-1].strip()
        if first and first[0] not in "+-":
            first = "+" + first
        rest = "".join(terms[1:-1])
        pos.append(((last + rest + first).lstrip("+"), "reordered sum"))
        neg.append(("".join(terms[:-1]), "dropped term"))
    if (
        "," not in g
        and "=" not in g
        and "\\le" not in g
        and "\\ge" not in g
        and "<" not in g
        and ">" not in g
    ):
        neg.append((rf"-\left({g}\right)", "sign flip"))
    ints = [m for m in re.finditer(r"\d+", g) if not re.search(r"(\^\{?|_\{?)$", g[: m.start()])]
    if ints:
        m = ints[-1]
        neg.append((g[: m.start()] + str(int(m.group()) + 1) + g[m.end() :], "last integer +1"))
    return pos, neg


def cases_for_gold(gold: Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    first = gold[0] if isinstance(gold, list) else gold
    g = str(int(first)) if isinstance(first, float) and first.is_integer() else str(first)
    g = g.strip()
    if g.startswith("$") and g.endswith("$") and g.count("$") == 2:
        g = g[1:-1].strip()
    if _INT.fullmatch(g) and len(g) < 30:
        return _int_cases(int(g))
    m = _FRAC.fullmatch(g)
    if m:
        return _fraction_cases(m.group(1), int(m.group(2)), int(m.group(3)))
    if _DEC.fullmatch(g):
        return _decimal_cases(g)
    m = _SCI.fullmatch(g) or _E_SCI.fullmatch(g)
    if m:
        return _sci_cases(m)
    return _generic_cases(g)


def _numeric_value(s: str) -> Fraction | None:
    from trl_drgrpo.rewards.grader import parse_number

    n = parse_number(s)
    return None if n is None else n.value


def _clashes_with_alternatives(answer: str, gold: Any) -> bool:
    """A negative must differ from EVERY acceptable gold: drop it when it equals one as a string or number."""
    from trl_drgrpo.rewards.grader import normalize_answer

    golds = gold if isinstance(gold, list) else [gold]
    a, av = normalize_answer(answer), _numeric_value(answer)
    for g in golds:
        gs = str(int(g)) if isinstance(g, float) else str(g)
        if normalize_answer(gs) == a:
            return True
        gv = _numeric_value(gs)
        if av is not None and gv is not None and abs(av - gv) <= abs(gv) / 100:
            return True
    return False


PATHOLOGICAL = [
    ("power tower", boxed("2^{2^{2^{2^{2^{2}}}}}")),
    ("20000 digits", boxed("9" * 20_000)),
    ("nested braces", boxed("{" * 5_000 + "1" + "}" * 5_000)),
    ("unbalanced braces", r"\boxed{" + "{" * 3_000 + "1"),
    ("NUL bytes", "\x00" * 500 + boxed("\x00")),
    ("200k characters", "lorem ipsum " * 16_667 + "no final answer"),
    ("5000 boxes", boxed("\\frac{1}{7}") * 5_000),
    ("big factorial", boxed("(10^{100})!")),
    ("huge exponent", boxed("10^{10^{10}}")),
    ("big polynomial", boxed("(x+y+z)^{300}")),
]


def build_cases(suite: Path, limit: int | None, seed: int) -> list[Case]:
    from datasets import load_from_disk

    data = load_from_disk(str(suite))
    cases: list[Case] = []
    for split in data:
        for row in data[split]:
            gold = row["answer"]
            pos, neg = cases_for_gold(gold)
            cases += [Case(boxed(a), gold, 1, f"+ {kind}", split) for a, kind in pos]
            cases += [
                Case(boxed(a), gold, 0, f"- {kind}", split)
                for a, kind in neg
                if not _clashes_with_alternatives(a, gold)
            ]
    rng = random.Random(seed)
    golds = [c.gold for c in cases]
    for name, response in PATHOLOGICAL:
        for gold in rng.sample(golds, 3):
            cases.append(Case(response, gold, 0, f"- pathological: {name}", "pathological"))
    rng.shuffle(cases)
    if limit is not None:
        cases = cases[:limit]
    return cases


# ---------------------------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------------------------


def run_grader(name: str, fn, cases: list[Case], workers: int, timeout: float, chunk: int = 64) -> dict:
    from trl_drgrpo.rewards import GradingPool

    pool = GradingPool(workers, timeout, fn)
    scores, durations, failed = [], [], []
    try:
        with tqdm(total=len(cases), desc=name, unit="case") as bar:
            for start in range(0, len(cases), chunk):
                batch = cases[start : start + chunk]
                scores += pool.run([(c.response, c.gold) for c in batch])
                durations += pool.last_durations
                failed += pool.last_timed_out
                bar.update(len(batch))
    finally:
        pool.close()
    return {"scores": scores, "durations": durations, "timeouts": failed}


def summarize(name: str, result: dict, cases: list[Case], show: int) -> None:
    scores, durations, timeouts = result["scores"], result["durations"], result["timeouts"]
    exceptions = sum(s == EXCEPTION for s in scores)
    predicted = [1 if s == 1.0 else 0 for s in scores]
    agree = sum(p == c.label for p, c in zip(predicted, cases, strict=True))
    fp = [c for p, c in zip(predicted, cases, strict=True) if p == 1 and c.label == 0]
    fn = [c for p, c in zip(predicted, cases, strict=True) if p == 0 and c.label == 1]
    n_pos = sum(c.label for c in cases)
    print(f"\n== {name} ==")
    print(f"agreement: {100 * agree / len(cases):.2f}% ({agree}/{len(cases)})")
    print(
        f"false positives (wrong scored 1): {len(fp)}/{len(cases) - n_pos}; false negatives: {len(fn)}/{n_pos}"
    )
    print(f"exceptions: {exceptions}; hard timeouts (killed): {sum(timeouts)}")
    durations_sorted = sorted(durations)
    print(
        f"time per case: mean {1000 * sum(durations) / len(durations):.1f} ms, "
        f"p99 {1000 * durations_sorted[int(0.99 * (len(durations) - 1))]:.1f} ms, max {max(durations):.2f} s"
    )
    worst = max(range(len(cases)), key=lambda i: durations[i])
    print(f"slowest case: {cases[worst].kind} ({cases[worst].source})")
    for title, items in (("false positives", fp), ("false negatives", fn)):
        kinds = Counter(c.kind for c in items)
        if kinds:
            print(f"{title} by kind: {dict(kinds.most_common(8))}")
        for c in items[:show]:
            tail = c.response[-120:].replace("\n", " ")
            print(f"  [{c.source}] {c.kind}: gold={c.gold!r} response=...{tail!r}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["external", "suite", "both"], default="both")
    parser.add_argument("--suite", default=os.environ.get("TRL_DRGRPO_EVAL_SUITE", str(DEFAULT_SUITE)))
    parser.add_argument(
        "--limit", type=int, default=None, help="grade only the first N (shuffled) suite cases"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=10.0, help="hard per-case timeout (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=5, help="misgraded examples printed per grader and kind")
    parser.add_argument("--skip-math-verify", action="store_true")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the workers import the graders from here
    sys.path.insert(0, str(REPO))
    import grader_agreement as me

    if args.part in ("external", "both"):
        print("=== Part 1: other projects' grader test cases ===")
        me.external_report(args.workers, args.timeout, args.show if args.show else 0)
    if args.part == "external":
        return
    if not Path(args.suite).is_dir():
        sys.exit(f"evaluation suite not found at {args.suite} (set --suite or TRL_DRGRPO_EVAL_SUITE)")
    print("\n=== Part 2: rewrites of the evaluation suite's golds ===")
    cases = build_cases(Path(args.suite), args.limit, args.seed)
    n_pos = sum(c.label for c in cases)
    print(
        f"{len(cases)} cases: {n_pos} equal (label 1), {len(cases) - n_pos} unequal or pathological (label 0)"
    )
    print(f"by source: {dict(Counter(c.source for c in cases))}")
    graders = [("ours (trl_drgrpo.rewards.grader.grade)", me.ours)]
    if not args.skip_math_verify:
        graders.append(("plain Math-Verify (parse + verify)", me.math_verify_plain))
    results = {}
    for name, fn in graders:
        start = time.perf_counter()
        results[name] = run_grader(name, fn, cases, args.workers, args.timeout)
        results[name]["wall"] = time.perf_counter() - start
    for name, result in results.items():
        summarize(name, result, cases, args.show)
        print(f"wall time: {result['wall']:.1f} s with {args.workers} workers")


if __name__ == "__main__":
    main()
