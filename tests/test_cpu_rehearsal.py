"""The CPU rehearsal's readers (tests/cpu_rehearsal.py) on stand-in run folders; the rehearsal itself runs in
`make cpu-rehearsal` (vLLM's CPU build, 4 launches, minutes)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from tests import cpu_rehearsal as rehearsal
from tests.distributed.launch import Launch


def _state(folder, steps, evals=()):
    folder.mkdir(parents=True, exist_ok=True)
    history = [{"step": s, "eval_average/accuracy": 0.5} for s in evals]
    history += [{"step": s, "loss": 0.1 * s, "step_time": 1.0 + s} for s in steps]
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))


def test_logged_steps_come_from_the_newest_checkpoint_or_the_finished_run(tmp_path):
    run = tmp_path / "run"
    assert rehearsal._logged_steps(run) == []
    _state(run / "checkpoint-2", [1, 2])
    _state(
        run / "checkpoint-10", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], evals=[0, 4]
    )  # 10 > 2 by number, not by name
    assert rehearsal._logged_steps(run) == list(range(1, 11))
    _state(run, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    assert rehearsal._logged_steps(run)[-1] == 11


def test_training_logs_drop_wall_clock_keys_only(tmp_path):
    _state(tmp_path / f"checkpoint-{rehearsal.STEPS}", [1, 2], evals=[0])
    logs = rehearsal.training_logs(tmp_path)
    assert logs[0] == {"step": 0, "eval_average/accuracy": 0.5}
    assert logs[1:] == [{"step": 1, "loss": 0.1}, {"step": 2, "loss": 0.2}]


def test_weights_difference(tmp_path):
    for name, value in (("a", 1.0), ("b", 1.0), ("c", 1.5)):
        (tmp_path / name).mkdir()
        save_file(
            {"w": torch.full((2, 2), value), "v": torch.zeros(3)}, str(tmp_path / name / "model.safetensors")
        )
    assert rehearsal.weights_difference(tmp_path / "a", tmp_path / "b") == 0.0
    assert rehearsal.weights_difference(tmp_path / "a", tmp_path / "c") == pytest.approx(0.5)
    (tmp_path / "d").mkdir()
    save_file({"w": torch.full((2, 2), 1.25)}, str(tmp_path / "d" / "model.safetensors"))
    assert rehearsal.weights_difference(tmp_path / "a", tmp_path / "d") == float("inf")  # a tensor is missing
    assert rehearsal.weights_difference(tmp_path / "a", tmp_path / "d", same_names=False) == pytest.approx(
        0.25
    )


def test_rank_exit_codes_read_torch_elastics_summary():
    summary = "[0]:\n  exitcode  : -9 (pid: 12)\n[1]:\n  exitcode  : 1 (pid: 13)\n"
    assert rehearsal.rank_exit_codes(Launch(1, summary, {}, 0.0)) == {"-9", "1"}
    assert rehearsal.rank_exit_codes(Launch(0, "", {}, 0.0)) == set()


def test_evaluations_read_accuracy_truncation_and_responses(tmp_path):
    step = tmp_path / "eval" / "step_4"
    step.mkdir(parents=True)
    (step / "summary.json").write_text(json.dumps({"average": {"accuracy": 0.25}}))
    records = [
        {"benchmark": "math", "index": 0, "response": "x </answer>", "finished": True},
        {"benchmark": "math", "index": 1, "response": "y y y", "finished": False},
    ]
    (step / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (found,) = rehearsal.evaluations(tmp_path).items()
    assert found[0] == 4 and found[1]["accuracy"] == 0.25 and found[1]["truncated"] == 0.5
    assert found[1]["finished"] == ["x </answer>"] and len(found[1]["responses"]) == 2


def test_the_rehearsal_refuses_to_start_without_the_suite_or_into_a_used_folder(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("TRL_DRGRPO_EVAL_SUITE", str(tmp_path / "absent"))
    assert rehearsal.main(["--output_dir", str(tmp_path / "out")]) == 2
    assert "evaluation suite is needed" in capsys.readouterr().err
    monkeypatch.setenv("TRL_DRGRPO_EVAL_SUITE", str(tmp_path))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old").write_text("x")
    assert rehearsal.main(["--output_dir", str(tmp_path / "out")]) == 2
    assert "is not empty" in capsys.readouterr().err


def test_the_overrides_keep_the_recipes_launch_shape():
    """Only size, arithmetic and CPU keys change: vLLM colocated, the objective, template and endings stay."""
    import yaml

    recipe = yaml.safe_load((rehearsal.REPO / rehearsal.RECIPE).read_text())
    assert recipe["use_vllm"] and recipe["vllm_mode"] == "colocate"
    kept = {"use_vllm", "vllm_mode", "template", "endings", "length_normalization", "std_normalization", "beta",
            "eval_benchmarks", "eval_at_start", "learning_rate", "temperature", "gradient_checkpointing"}  # fmt: skip
    assert not kept & set(rehearsal.OVERRIDES)
    assert rehearsal.OVERRIDES["samples_per_rollout"] % rehearsal.OVERRIDES["samples_per_step"] == 0


def test_endings_check_tells_a_stop_at_answer_from_a_run_on_to_eos():
    stopped = {0: {"finished": ["a </answer>", "b </answer> ", "no tag"]}}
    ran_on = {0: {"finished": ["a </answer> And that is all", "no tag"]}}
    assert rehearsal.endings_check(stopped, stops=True)[0]
    assert not rehearsal.endings_check(ran_on, stops=True)[0]  # a stop string that did not stop
    assert rehearsal.endings_check(ran_on, stops=False)[0]
    assert not rehearsal.endings_check(stopped, stops=False)[0]  # stopped where nothing should stop
    assert not rehearsal.endings_check({0: {"finished": ["no tag"]}}, stops=True)[0]  # nothing to judge by
