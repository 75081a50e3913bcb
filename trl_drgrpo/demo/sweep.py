"""Seed sweep of the demo (``make demo-sweep``): does RL raise held-out accuracy on every seed?

Runs ``recipes/demo.py --seed S`` for each seed (the seed drives the base model's pretraining, the RL run
and the sampled evaluation, so each seed is a different base model too: a stand-in for the float
differences between machines), then writes ``sweep.md`` and ``sweep.json`` with one row per seed, the
mean and spread, and whether greedy and sampled accuracy rose on every seed.

    python -m trl_drgrpo.demo.sweep [--output_dir outputs/demo-sweep] [--seeds 0,1,2,3,4] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, spread


def sweep_rows(summaries: Mapping[int, Mapping]) -> list[dict]:
    """One row per seed from the demo's ``summary.json`` contents."""
    rows = []
    for seed, s in sorted(summaries.items()):
        rows.append(
            {
                "seed": seed,
                "greedy_before": s["before"]["greedy"]["accuracy"],
                "greedy_after": s["after"]["greedy"]["accuracy"],
                "sampled_before": s["before"]["sampled"]["accuracy"],
                "sampled_after": s["after"]["sampled"]["accuracy"],
                "reward_start": s["reward_start"],
                "reward_end": s["reward_end"],
                "cpu_s": s.get("timings_s", {}).get("cpu_s"),
                "wall_s": s.get("timings_s", {}).get("total_s"),
            }
        )
    return rows


def sweep_table(rows: Sequence[Mapping]) -> tuple[str, dict]:
    """The Markdown table (rows, then mean ± std) and the verdicts."""
    keys = ("greedy_before", "greedy_after", "sampled_before", "sampled_after", "reward_start", "reward_end")
    lines = [
        "| seed | greedy before | greedy after | sampled before | sampled after | reward first steps "
        "| reward last steps | CPU s | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = " | ".join(f"{r[k]:.3f}" for k in keys)
        lines.append(f"| {r['seed']} | {cells} | {r['cpu_s']} | {r['wall_s']} |")
    stats = {k: _mean_std([r[k] for r in rows]) for k in keys}
    lines.append("| mean ± std | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in stats.values()) + " | | |")
    verdict = {
        "seeds": len(rows),
        "greedy_rises_on_every_seed": all(r["greedy_after"] > r["greedy_before"] for r in rows),
        "sampled_rises_on_every_seed": all(r["sampled_after"] > r["sampled_before"] for r in rows),
        "smallest_greedy_gain": min(r["greedy_after"] - r["greedy_before"] for r in rows),
        "smallest_sampled_gain": min(r["sampled_after"] - r["sampled_before"] for r in rows),
    }
    lines.append(
        f"\nGreedy accuracy rises on every seed: {verdict['greedy_rises_on_every_seed']} "
        f"(smallest gain {verdict['smallest_greedy_gain']:+.3f}); sampled: {verdict['sampled_rises_on_every_seed']} "
        f"(smallest gain {verdict['smallest_sampled_gain']:+.3f})."
    )
    return "\n".join(lines) + "\n", verdict


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output_dir", default="outputs/demo-sweep")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--jobs", type=int, default=2, help="demos at a time (one torch thread each)")
    args, extra = parser.parse_known_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not seeds or args.jobs < 1:
        parser.error("give at least one seed and --jobs >= 1")
    out = Path(args.output_dir).resolve()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    pending, running = list(seeds), []
    while pending or running:
        while pending and len(running) < args.jobs:
            seed = pending.pop(0)
            run_out = out / f"seed{seed}"
            run_out.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, str(REPO / "recipes" / "demo.py"), "--output_dir", str(run_out)]
            cmd += ["--seed", str(seed), *extra]
            log = open(run_out / "demo.log", "w")  # noqa: SIM115 - closed below
            print(f"[sweep] seed {seed}: {' '.join(cmd)}", flush=True)
            running.append(
                (seed, subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log)
            )
        seed, proc, log = running.pop(0)
        proc.wait()
        log.close()
        if proc.returncode != 0:
            for _, other, _ in running:
                other.terminate()
            raise SystemExit(f"[sweep] seed {seed} failed; see {out / f'seed{seed}' / 'demo.log'}")
        print(f"[sweep] seed {seed} done", flush=True)
    summaries = {s: json.loads((out / f"seed{s}" / "summary.json").read_text()) for s in seeds}
    table, verdict = sweep_table(sweep_rows(summaries))
    (out / "sweep.md").write_text(table)
    (out / "sweep.json").write_text(json.dumps({"rows": sweep_rows(summaries), **verdict}, indent=2) + "\n")
    print(table)
    return verdict


if __name__ == "__main__":
    main(sys.argv[1:])
