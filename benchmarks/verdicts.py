"""Dump the grader's verdict on every case of ``grader_agreement.py`` (other projects' cases and the suite's gold
rewrites) to JSON, or compare two dumps: the list of cases whose verdict changed.

    python benchmarks/verdicts.py dump OUT.json [--workers 2]
    python benchmarks/verdicts.py diff BEFORE.json AFTER.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def dump(out: str, workers: int, timeout: float) -> None:
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    import grader_agreement as ga

    external = ga.load_external()
    suite = ga.build_cases(Path(ga.DEFAULT_SUITE), None, 0)
    rows = [
        ("external", f"#{c['id']}", c["pred"], c["gold"], c["expected"], ga.ours_external) for c in external
    ]
    rows += [("suite", f"{c.source}:{c.kind}", c.response, c.gold, c.label, ga.ours) for c in suite]
    result = []
    for part, fn in (("external", ga.ours_external), ("suite", ga.ours)):
        items = [r for r in rows if r[0] == part]
        start = time.perf_counter()
        run = ga.run_grader(
            part, fn, [ga.Case(r[2], r[3], r[4], r[1], part) for r in items], workers, timeout
        )
        print(
            f"{part}: {len(items)} cases in {time.perf_counter() - start:.1f} s, max {max(run['durations']):.2f} s"
        )
        for r, score, seconds in zip(items, run["scores"], run["durations"], strict=True):
            result.append(
                {
                    "part": part,
                    "name": r[1],
                    "pred": r[2],
                    "gold": r[3],
                    "label": r[4],
                    "score": score,
                    "seconds": round(seconds, 4),
                }
            )
    Path(out).write_text(json.dumps(result))


def diff(before: str, after: str) -> None:
    a, b = json.loads(Path(before).read_text()), json.loads(Path(after).read_text())
    assert len(a) == len(b), "the two dumps hold different case lists"
    changed = [(x, y) for x, y in zip(a, b, strict=True) if x["score"] != y["score"]]
    for part in ("external", "suite"):
        n = sum(x["part"] == part for x in a)
        right = [
            sum(r["part"] == part and (r["score"] == 1.0) == (r["label"] == 1) for r in d) for d in (a, b)
        ]
        print(f"{part}: {n} cases; agreeing with the label before {right[0]}, after {right[1]}")
    print(f"{len(changed)} verdicts changed")
    for x, y in changed:
        fixed = "fixed" if (y["score"] == 1.0) == (y["label"] == 1) else "BROKEN"
        print(
            f"  [{x['part']}] {x['name']} label={x['label']} {x['score']} -> {y['score']} ({fixed}): "
            f"pred={x['pred'][-80:]!r} gold={str(x['gold'])[:80]!r}"
        )
    slow = max(b, key=lambda r: r["seconds"])
    print(f"slowest after: {slow['seconds']:.2f} s ({slow['part']} {slow['name']})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out")
    d.add_argument("--workers", type=int, default=2)
    d.add_argument("--timeout", type=float, default=10.0)
    c = sub.add_parser("diff")
    c.add_argument("before")
    c.add_argument("after")
    args = parser.parse_args()
    dump(args.out, args.workers, args.timeout) if args.command == "dump" else diff(args.before, args.after)
