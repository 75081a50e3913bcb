"""The paper's launch shape rehearsed on CPU with vLLM's CPU build (`make cpu-rehearsal`); prints one table.

The paper's recipe (``recipes/qwen2.5-math-1.5b/drgrpo_r1.yaml``, or ``--recipe``) launched as the paper does,
``accelerate launch`` under DeepSpeed ZeRO-2 (``accelerate_configs/cpu_zero2.yaml``: 2 processes over gloo),
with TRL's colocated vLLM (one engine per process), the recipe's endings, its in-training evaluation on the five
benchmarks through those engines, and checkpoints at rollout boundaries; shrunk to the vLLM twin
(``tests/vllm_twin.py``) and a few steps. Only the keys in ``OVERRIDES`` (and the model, data and folders) differ
from the recipe. The same command is launched four times:

1. ``uninterrupted``: steps 1-6 (3 rollouts of 2 optimizer steps; evaluations at steps 0, 4 and 6).
2. ``interrupted``: rank 1 is SIGKILLed as step 5 ends (mid-rollout, after checkpoint-4); the launcher must end.
3. the same command again: resumes from checkpoint-4 and regenerates rollout 3 with its engines; SIGTERM reaches
   rank 1 as step 5 begins: both ranks stop after step 5, save checkpoint-5 (mid-rollout) and exit 143.
4. the same command again: resumes from checkpoint-5 and finishes. Its weights, per-step logs and final
   evaluation must equal the uninterrupted run's.

Faults come from the test-only fault points (``TRL_DRGRPO_TEST_FAULTS``), so where each one strikes does not
depend on timing. Needs ``make install-vllm`` and the local evaluation suite (``$TRL_DRGRPO_EVAL_SUITE`` or
``../shared/data/evaluation_suite``): the twin is trained on its first math problems.

    make cpu-rehearsal                          # = the vLLM test environment's variables + python -m tests.cpu_rehearsal
    python -m tests.cpu_rehearsal --recipe recipes/qwen2.5-math-1.5b/drgrpo_qwen_math.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.distributed.launch import Launch, launch_two_ranks
from tests.test_resume_e2e import TIME_KEYS

REPO = Path(__file__).resolve().parents[1]
RECIPE = "recipes/qwen2.5-math-1.5b/drgrpo_r1.yaml"
CONFIG = "cpu_zero2.yaml"
STEPS = 6
KILL = "step@1:5"  # SIGKILL on rank 1 as step 5 ends: inside rollout 3 (steps 5-6), checkpoint-4 is the last
TERM = "term@1:5"  # in the resumed launch: SIGTERM on rank 1 as step 5 begins
SIGTERM_EXIT_CODE = 143
LAUNCH_TIMEOUT_S = 600
LONG_BUDGET = 64  # templates without a stop string: the twin's answer, its tail and EOS take up to ~60 tokens
# The recipe's keys this rehearsal changes: CPU arithmetic, the twin's size, a short run.
OVERRIDES = {
    "use_cpu": True,
    "bf16": False,
    "dtype": "float32",
    "vllm_enable_sleep_mode": False,  # vLLM offers sleep mode on CUDA/ROCm/XPU only
    "max_steps": STEPS,
    "samples_per_step": 16,  # 2 processes x 4 per device x 2 accumulation steps
    "samples_per_rollout": 32,  # the twin's 8 problems x 4 samples: 2 optimizer steps per rollout
    "per_device_train_batch_size": 4,
    "num_generations": 4,
    "max_completion_length": 40,  # the twin's answers take 20-39 tokens up to </answer>
    "vllm_max_model_length": 1024,
    "eval_every_rollouts": 2,
    "eval_limit": 4,
    "eval_max_tokens": 40,
    "save_steps": 2,  # every rollout
    "report_to": "none",
    "log_completions": False,
}


@dataclass
class Outcome:
    """What one launch did, read from its logs and its output folder."""

    name: str
    faults: str
    launch: Launch
    seconds: float
    trained: list[int] = field(default_factory=list)  # the steps this launch logged
    checkpoints: list[int] = field(default_factory=list)
    engines: int = 0  # ranks that built a vLLM engine
    engine_s: list[float] = field(default_factory=list)  # the engine build's seconds, as vLLM reports them


def suite_path() -> Path:
    return Path(os.environ.get("TRL_DRGRPO_EVAL_SUITE", REPO.parent / "shared" / "data" / "evaluation_suite"))


def prepare(root: Path, recipe: str, suite: Path) -> Path:
    """The twin, its training problems and ``recipe.yaml`` (the recipe with ``OVERRIDES``) under ``root``."""
    from datasets import Dataset, DatasetDict

    from tests.vllm_twin import build_twin, training_problems

    config = yaml.safe_load((REPO / recipe).read_text())
    twin = build_twin(root / "twin", suite, template=config["template"])
    rows = [{"problem": p, "answer": a} for _, p, a in training_problems(suite)]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(root / "data"))
    config.update(OVERRIDES)
    if not config["template"] == "r1":  # no stop string: the twin's answer runs on to its tail and EOS
        config.update(max_completion_length=LONG_BUDGET, eval_max_tokens=LONG_BUDGET)
    config.update(model_name_or_path=twin, dataset_name=str(root / "data"), eval_data=str(suite))
    config["run_name"] = f"cpu-rehearsal-{Path(recipe).stem}"
    (root / "recipe.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def launch(root: Path, name: str, faults: str = "") -> Outcome:
    """One launch of the rehearsal's command into ``root/name/run``."""
    run_dir = root / name / "run"
    before = _logged_steps(run_dir)
    old_logs = set((root / name).glob("logs-*"))
    start = time.monotonic()
    env = {"VLLM_LOGGING_LEVEL": "INFO"}  # TRL sets ERROR; the engine's start line shows it was built
    result = launch_two_ranks(root, root / name, faults, timeout_s=LAUNCH_TIMEOUT_S, env=env, config=CONFIG)
    outcome = Outcome(name, faults or "-", result, time.monotonic() - start)
    outcome.trained = [s for s in _logged_steps(run_dir) if s not in before]
    outcome.checkpoints = sorted(int(p.name.split("-")[1]) for p in run_dir.glob("checkpoint-*"))
    logs = root / name / f"logs-launcher-{len(old_logs)}"
    for logs in set((root / name).glob("logs-*")) - old_logs:  # the launch's own (none if it never started)
        (logs / "launcher.log").write_text(result.stderr)
    stdout = [p.read_text(errors="replace") for p in sorted(logs.glob("*/attempt_0/*/stdout.log"))]
    outcome.engines = sum("Initializing a V1 LLM engine" in text for text in stdout)
    took = [
        re.search(r"init engine \(profile, create kv cache, warmup model\) took ([0-9.]+)", t) for t in stdout
    ]
    outcome.engine_s = [float(m.group(1)) for m in took if m]  # vLLM logs it once per node (rank 0)
    return outcome


def _logged_steps(run_dir: Path) -> list[int]:
    """Steps with a training log in the newest checkpoint's (or the finished run's) log history."""
    states = [run_dir / "trainer_state.json"] + sorted(
        run_dir.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1])
    )[::-1]
    for path in states:
        if path.exists():
            history = json.loads(path.read_text())["log_history"]
            return [h["step"] for h in history if "loss" in h]
    return []


def training_logs(run_dir: Path) -> list[dict]:
    """The per-step logs (training and evaluation) in the last checkpoint, without wall-clock keys."""
    history = json.loads((run_dir / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())["log_history"]
    return [{k: v for k, v in h.items() if k not in TIME_KEYS} for h in history]


def evaluations(run_dir: Path) -> dict[int, dict]:
    """Each in-training evaluation: step -> (average accuracy, truncated share, responses)."""
    found = {}
    for summary in sorted(run_dir.glob("eval/step_*/summary.json")):
        step = int(summary.parent.name.split("_")[1])
        data = json.loads(summary.read_text())
        samples = [json.loads(x) for x in (summary.parent / "samples.jsonl").read_text().splitlines()]
        truncated = sum(not r["finished"] for r in samples) / max(len(samples), 1)
        found[step] = {
            "accuracy": data["average"]["accuracy"],
            "truncated": truncated,
            "responses": [(r["benchmark"], r["index"], r["response"]) for r in samples],
            "finished": [r["response"] for r in samples if r["finished"]],
        }
    return found


def weights_difference(a: Path, b: Path, same_names: bool = True) -> float:
    """The largest absolute difference between two saved models' tensors (inf when ``same_names`` and the names
    differ; else over the names both have: the twin's file also holds its tied ``lm_head``)."""
    from safetensors.torch import load_file

    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    if same_names and wa.keys() != wb.keys():
        return float("inf")
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa.keys() & wb.keys())


def endings_check(evals: dict[int, dict], stops: bool) -> tuple[bool, str]:
    """Where the finished evaluation responses end: at their first ``</answer>`` when the endings stop there (R1
    under the paper's endings), else past it (no stop string: the twin writes its tail, then EOS)."""
    finished = [r for e in evals.values() for r in e["finished"]]
    tagged = [r for r in finished if "</answer>" in r]
    at_stop = sum(r.rstrip().endswith("</answer>") for r in tagged)
    ok = bool(tagged) and at_stop == (len(tagged) if stops else 0)
    rule = "stop at </answer>" if stops else "no stop string"
    return ok, (f"endings ({rule}): of {len(finished)} finished evaluation responses {len(tagged)} write </answer>, "
                f"{at_stop} end there")  # fmt: skip


def rank_exit_codes(launch: Launch) -> set[str]:
    """The ranks' exit codes torch elastic names in its failure summary (none when every rank exited 0)."""
    return set(re.findall(r"exitcode\s*:\s*(-?\d+)", launch.stderr))


def per_step(logs: list[dict], key: str) -> list[float]:
    return [h[key] for h in logs if key in h and "loss" in h]


def check(results: dict, failures: list[str], condition: bool, message: str) -> None:
    results.setdefault("checks", []).append((message, condition))
    if not condition:
        failures.append(message)


def rehearse(root: Path, recipe: str, suite: Path) -> tuple[str, list[str]]:
    """Run the four launches; the table and the list of failed checks."""
    prepare(root, recipe, suite)
    failures: list[str] = []
    results: dict = {}
    a = launch(root, "uninterrupted")
    b1 = launch(root, "interrupted", KILL)
    b2 = launch(root, "interrupted", TERM)
    b3 = launch(root, "interrupted")
    ra, rb = root / "uninterrupted" / "run", root / "interrupted" / "run"
    config = yaml.safe_load((root / "recipe.yaml").read_text())
    endings = config.get("endings", "paper")

    check(results, failures, a.launch.code == 0, f"uninterrupted: exit {a.launch.code} (expected 0)")
    check(
        results,
        failures,
        a.engines == 2,
        f"uninterrupted: {a.engines} ranks built a vLLM engine (expected 2)",
    )
    check(results, failures, a.trained == list(range(1, STEPS + 1)), f"uninterrupted: trained {a.trained}")
    check(results, failures, b1.launch.code not in (0, None) and "-9" in rank_exit_codes(b1.launch),
          f"killed: exit {b1.launch.code}, ranks {sorted(rank_exit_codes(b1.launch))} (expected a -9)")  # fmt: skip
    check(results, failures, max(b1.checkpoints, default=0) == 4, f"killed: checkpoints {b1.checkpoints}")
    stop_line = "Stopped by SIGTERM after optimizer step 5;"
    ranks = b2.launch.ranks
    check(results, failures, b2.launch.code == 1 and rank_exit_codes(b2.launch) == {str(SIGTERM_EXIT_CODE)}
          and stop_line in ranks[0] and "SIGTERM: finishing" in ranks[1] and "SIGTERM: finishing" not in ranks[0],
          f"SIGTERM: launcher exit {b2.launch.code}, ranks {sorted(rank_exit_codes(b2.launch))} (expected 1 and "
          "143); only rank 1 got the signal, rank 0 stopped after the same step 5")  # fmt: skip
    saved = rb / "checkpoint-5"
    parts = [
        f"{kind}_{r}.p{ext}"
        for r in (0, 1)
        for kind, ext in (("rng_state", "th"), ("drgrpo_rollout_state", "t"))
    ]
    check(results, failures, all((saved / f).is_file() for f in parts),
          "SIGTERM: checkpoint-5 (mid-rollout) holds each rank's RNG state and rest of the rollout")  # fmt: skip
    check(results, failures, "Resuming from" in b2.launch.ranks[0] and b2.trained == [5],
          f"SIGTERM launch: resumed and trained {b2.trained} (expected [5])")  # fmt: skip
    check(results, failures, 5 in b2.checkpoints and not (rb / "eval" / "step_5").exists(),
          f"SIGTERM: checkpoints {b2.checkpoints}, no evaluation after the signal")  # fmt: skip
    check(results, failures, b3.launch.code == 0 and b3.trained == [6],
          f"resumed: exit {b3.launch.code}, trained {b3.trained} (expected 0, [6])")  # fmt: skip
    table_rows = []
    if a.launch.code == 0 and b3.launch.code == 0:
        logs_a, logs_b = training_logs(ra), training_logs(rb)
        diff = weights_difference(ra, rb)
        moved = weights_difference(ra, root / "twin", same_names=False)
        grads = per_step(logs_a, "grad_norm")
        check(
            results,
            failures,
            diff == 0.0,
            f"resumed weights = uninterrupted weights: max |difference| {diff:.3g}",
        )
        check(results, failures, logs_a == logs_b, "resumed per-step logs = uninterrupted logs (losses, rewards, "
              "lengths, evaluations)")  # fmt: skip
        check(results, failures, 0 < moved < float("inf") and all(g > 0 for g in grads[-2:]),
              f"the policy moved (max |w - twin| {moved:.3g}) and the regenerated rollout had a gradient "
              f"(grad norms of steps 5-6: {grads[-2:]})")  # fmt: skip
        eval_a, eval_b = evaluations(ra), evaluations(rb)
        check(results, failures, sorted(eval_a) == [0, 4, STEPS], f"evaluations at steps {sorted(eval_a)}")
        check(results, failures, eval_a.get(STEPS, {}).get("responses") == eval_b.get(STEPS, {}).get("responses"),
              f"final evaluation: the resumed run's {len(eval_b.get(STEPS, {}).get('responses', []))} greedy "
              "responses equal the uninterrupted run's")  # fmt: skip
        ok, message = endings_check(eval_a, stops=config["template"] == "r1" and endings == "paper")
        check(results, failures, ok, message)
        table_rows = summary_rows(a, logs_a, eval_a, b1, b2, b3, diff)
    return table(table_rows, results, recipe, endings), failures


def summary_rows(a, logs_a, eval_a, b1, b2, b3, diff) -> list[tuple[str, ...]]:
    rewards = per_step(logs_a, "rewards/math_reward/mean")
    clipped = per_step(logs_a, "completions/clipped_ratio")
    accuracy = ", ".join(f"step {s}: {e['accuracy']:.3f}" for s, e in sorted(eval_a.items()))
    truncated = ", ".join(f"{e['truncated']:.2f}" for _, e in sorted(eval_a.items()))
    built = ", ".join(f"{s:.1f}" for s in a.engine_s) or "?"
    rows = [("steps", f"{len(a.trained)} optimizer steps, 3 rollouts of 32 samples, ZeRO-2 over gloo, 2 processes "
                      f"x 1 colocated engine ({a.engines} built; rank 0's engine init took {built} s)")]  # fmt: skip
    rows.append(("reward (mean per rollout)", " ".join(f"{r:.3f}" for r in rewards)))
    rows.append(("truncated (share per rollout)", " ".join(f"{c:.3f}" for c in clipped)))
    rows.append(("in-training evaluation (5 benchmarks x 4, greedy, average accuracy)", accuracy))
    rows.append(("evaluation: truncated share", truncated))
    for o, ending in (
        (a, "finished, exit 0"),
        (b1, f"SIGKILL rank 1 after step 5: launcher exit {b1.launch.code}, ranks {sorted(rank_exit_codes(b1.launch))}"),
        (b2, f"resumed from checkpoint-4; SIGTERM rank 1 at step 5: launcher exit {b2.launch.code}, ranks "
             f"{sorted(rank_exit_codes(b2.launch))}"),
        (b3, f"resumed from checkpoint-5, finished, exit {b3.launch.code}"),
    ):  # fmt: skip
        rows.append((f"launch `{o.name}` ({o.faults})", f"steps saved {o.trained}, checkpoints {o.checkpoints}, "
                     f"{o.seconds:.0f} s: {ending}"))  # fmt: skip
    rows.append(("resume equality", f"max |w_resumed - w_uninterrupted| = {diff:.3g} (float32)"))
    return rows


def table(rows: list[tuple[str, ...]], results: dict, recipe: str, endings: str) -> str:
    lines = [f"CPU rehearsal of {recipe} (endings: {endings}), vLLM twin, {CONFIG}", "", "| what | result |",
             "| --- | --- |"]  # fmt: skip
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += [
        f"| check | {'ok' if ok else 'FAILED'}: {message} |" for message, ok in results.get("checks", [])
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="outputs/cpu-rehearsal", help="Where the launches write.")
    parser.add_argument(
        "--recipe", default=RECIPE, help="The recipe rehearsed (its template sets the endings)."
    )
    args = parser.parse_args(argv)
    suite = suite_path()
    if not suite.is_dir():
        print(f"cpu-rehearsal: the evaluation suite is needed and was not found at {suite} "
              "(set TRL_DRGRPO_EVAL_SUITE)", file=sys.stderr)  # fmt: skip
        return 2
    root = Path(args.output_dir).resolve()
    if root.exists() and any(root.iterdir()):
        print(f"cpu-rehearsal: {root} is not empty; remove it or choose --output_dir", file=sys.stderr)
        return 2
    start = time.monotonic()
    text, failures = rehearse(root, args.recipe, suite)
    text += f"\n\nwhole rehearsal: {time.monotonic() - start:.0f} s"
    print(text)
    (root / "rehearsal.md").write_text(text + "\n")
    if failures:
        print(f"cpu-rehearsal: {len(failures)} checks failed (logs under {root})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
