"""The bias lab's mechanism metrics and statistics, checked on hand-written responses and hand-computed numbers."""

from __future__ import annotations

import math

import pytest

from trl_drgrpo.demo.lab_mechanism import (
    bucket_shares,
    decision_rates,
    log_drift,
    parse_response,
    pooled_rate,
    predicted_drift,
    rollout_mechanism,
    token_weights,
)
from trl_drgrpo.demo.lab_report import (
    fit_line,
    heldout_gain,
    mean_std,
    mechanism_numbers,
    permutation_test,
    steps_needed,
    window_weights,
)
from trl_drgrpo.demo.synthetic import varied_solution

STOP_RIGHT = " 3 * 4 = \\boxed{12}."
STOP_WRONG = " 3 * 4 = \\boxed{13}."
RAMBLE_WRONG = " 3 * 4 = \\boxed{13}. Hmm, wait. So, hmm."
CHECK_RIGHT = (
    " 3 * 4 = \\boxed{12}. Let's check this step by step: 3 * 4 gives 12, and the result stays the same."
)


def test_parse_response_reads_the_grammar():
    s = parse_response(STOP_RIGHT, "12")
    assert (s.verdict, s.ending, s.continued, s.slip) == ("right", "stop", False, False)
    s = parse_response(STOP_WRONG, 12)
    assert (s.verdict, s.ending, s.continued, s.slip) == ("wrong", "stop", False, True)
    s = parse_response(RAMBLE_WRONG, "12")
    assert (s.verdict, s.ending, s.fillers, s.continued) == ("wrong", "ramble", 2, True)
    assert parse_response(CHECK_RIGHT, "12").ending == "check"
    assert parse_response(" 3 * 4 = 13.", "12").verdict == "unboxed"
    s = parse_response(" 3 * 4 = \\boxed{20}. 1 2 3", "12")
    assert (s.verdict, s.slip, s.ending, s.continued) == ("wrong", False, "other", True)
    s = parse_response(" \\boxed{x}", "12")  # not a number: wrong, no slip, no crash
    assert (s.verdict, s.slip, s.ending) == ("wrong", False, "stop")
    # a filler then other text is "other", not a ramble
    assert parse_response(STOP_WRONG + " Hmm, wait. 7", "12").ending == "other"


def test_parse_reads_the_generator_back():
    import random

    rng = random.Random(0)
    for _ in range(200):
        stated = rng.choice([12, 13])
        text = " " + varied_solution(
            3, "*", 4, stated, rng, steps_rate=0.5, ramble_rate=0.5, ramble_continue=0.6
        )
        s = parse_response(text, "12")
        assert s.verdict == ("right" if stated == 12 else "wrong")
        assert s.ending in (("stop", "check") if stated == 12 else ("stop", "ramble"))
        assert s.fillers == (text.count(".") - 1 if s.ending == "ramble" else 0)  # one "." per sentence


def test_decision_rates():
    structures = [parse_response(t, "12") for t in (STOP_RIGHT, CHECK_RIGHT, STOP_WRONG, RAMBLE_WRONG, "13")]
    rates = decision_rates(structures)
    assert rates["p_continue_wrong"] == 0.5 and rates["p_continue_right"] == 0.5
    assert rates["fillers_after_wrong"] == 2.0 and rates["boxed_rate"] == 0.8
    assert rates["wrong_rate"] == 0.5 and rates["slip_rate"] == 0.5
    assert decision_rates([parse_response(STOP_RIGHT, "12")])["p_continue_wrong"] is None


def test_predicted_drift_hand_computed():
    # two wrong responses stop (10 tokens), two continue (20 tokens), all with A = -1, B = 4
    structures = [parse_response(t, "12") for t in (STOP_WRONG, STOP_WRONG, RAMBLE_WRONG, RAMBLE_WRONG)]
    lengths, adv = [10, 10, 20, 20], [-1.0] * 4
    grpo = predicted_drift(structures, adv, token_weights(lengths, True, 48), lengths)
    # g = 1/4 [2 * (1/10)(-1)(0 - 0.5) + 2 * (1/20)(-1)(1 - 0.5)] = 0.0125; M = 1/4 * 4 = 1; drift = 0.5 g
    assert grpo["p"] == 0.5 and grpo["g"] == pytest.approx(0.0125) and grpo["mass"] == pytest.approx(1.0)
    assert grpo["drift"] == pytest.approx(0.00625)
    dr = predicted_drift(structures, adv, token_weights(lengths, False, 48), lengths)
    assert dr["g"] == pytest.approx(0.0) and dr["drift"] == pytest.approx(0.0)
    assert dr["mass"] == pytest.approx(60 / 48 / 4)
    # positive advantages flip the sign (a right-answer-like push)
    assert predicted_drift(structures, [1.0] * 4, token_weights(lengths, True, 48), lengths)["drift"] < 0
    none = predicted_drift([parse_response(STOP_RIGHT, "12")], [1.0], [0.1], [10])
    assert none["drift"] == 0.0 and none["p"] is None
    with pytest.raises(ValueError):
        predicted_drift(structures, adv[:3], [0.1] * 4, lengths)
    with pytest.raises(ValueError):
        token_weights([1], False, 0)


def test_bucket_shares_hand_computed():
    rewards = [1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1]  # k = 1, 2, 4 right of G = 4
    lengths, w = [1] * 12, [1.0] * 12
    dr_adv = [0.75, -0.25, -0.25, -0.25, 0.5, 0.5, -0.5, -0.5, 0, 0, 0, 0]
    shares = bucket_shares(rewards, dr_adv, w, lengths, 4)
    assert shares[1] == pytest.approx(1.5 / 3.5) and shares[2] == pytest.approx(2 / 3.5) and shares[4] == 0
    # GRPO: divide by the unbiased std, 0.5 for k=1 and sqrt(1/3) for k=2: sums 3 and 2*sqrt(3)
    std2 = math.sqrt(1 / 3)
    grpo_adv = [a / 0.5 for a in dr_adv[:4]] + [a / std2 for a in dr_adv[4:8]] + [0] * 4
    shares = bucket_shares(rewards, grpo_adv, w, lengths, 4)
    assert shares[1] == pytest.approx(3 / (3 + 2 * math.sqrt(3)))  # 0.464 > 0.429: the extreme group gains
    with pytest.raises(ValueError):
        bucket_shares([1, 0, 0], [0, 0, 0], [1] * 3, [1] * 3, 2)


def test_rates_drift_and_window_weights():
    counts = [[1, 4], [1, 4], [3, 4], [3, 4]]
    assert pooled_rate(counts) == 0.5 and pooled_rate([]) is None
    assert log_drift(counts, 2) == pytest.approx(math.log(6.5 / 2.5))
    assert log_drift([], 2) is None
    # mean(last 2) - mean(first 2) of x0..x3 = (d0 + 2 d1 + d2) / 2
    assert window_weights(4, 2) == [0.5, 1.0, 0.5, 0.0]
    assert window_weights(6, 1) == [1.0] * 5 + [0.0]


def test_statistics_against_fixed_numbers():
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, 1.2909944487))
    assert mean_std([7.0]) == (7.0, 0.0)
    assert permutation_test([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]) == pytest.approx(2 / 70)
    # |mean diff| = 3.5; a split of 1..8 is as extreme iff its left sum S has |2S - 36| / 4 >= 3.5, i.e.
    # S <= 11 ({1,2,3,4}, {1,2,3,5}) or S >= 25 (their mirrors): 4 of C(8,4) = 70
    a, b = [1.0, 2.0, 3.0, 5.0], [4.0, 6.0, 7.0, 8.0]
    assert permutation_test(a, b) == pytest.approx(4 / 70)
    assert fit_line([1.0, 2.0, 3.0], [3.0, 5.0, 7.0]) == pytest.approx((1.0, 2.0))  # y = 1 + 2x
    assert fit_line([1.0, 1.0], [1.0, 2.0]) is None and fit_line([0.0], [1.0]) is None
    # z now = 0.01 * 100 / (0.2 * sqrt(2/8)) = 10 -> T = 100 * (2.5758 / 10)^2
    assert steps_needed(0.01, 0.2, 100, 8) == pytest.approx(100 * 0.25758**2, rel=1e-4)
    assert steps_needed(-0.01, 0.2, 100, 8) is None and steps_needed(0.01, 0.0, 100, 1) is None


def test_heldout_gain_uses_only_the_arms_outside_the_test():
    run = lambda signal, drift: {"drift_predicted_signal": signal, "drift_measured": drift}  # noqa: E731
    per_run = {
        "grpo": {"0": run(1.0, 100.0)},  # would pull the fit far off if it were used
        "drgrpo": {"0": run(0.0, -100.0)},
        "length_only": {"0": run(0.1, -1.0), "1": run(0.3, -0.6)},
        "std_only": {"0": run(0.0, -1.2), "1": run(0.0, None)},  # a run without the metric is left out
    }
    kappa, runs = heldout_gain(per_run)
    # points (0.1, -1.0), (0.3, -0.6), (0.0, -1.2): y = -1.2 + 2x exactly
    assert runs == 3 and kappa == pytest.approx(2.0)
    assert heldout_gain({"grpo": per_run["grpo"], "std_only": {"0": run(0.0, -1.0)}}) is None


def test_rollout_mechanism_and_run_numbers():
    record = {
        "step": 1,
        "answers": ["12"] * 8,
        "completions": [STOP_RIGHT, STOP_RIGHT, STOP_WRONG, RAMBLE_WRONG] * 2,
        "lengths": [10, 10, 10, 20] * 2,
        "rewards": [1.0, 1.0, 0.0, 0.0] * 2,
        "advantages": [0.5, 0.5, -0.5, -0.5] * 2,
        "group_size": 4,
        "length_normalization": True,
        "budget": 48,
    }
    m = rollout_mechanism(record)
    assert m["counts_wrong"] == [2, 4] and m["p_continue_wrong"] == 0.5
    assert m["tokens_wrong_continue"] == 20 and m["tokens_wrong_stop"] == 10
    assert m["bucket_shares"] == [0.0, 0.0, 1.0, 0.0, 0.0] and m["pred_drift"] > 0
    later = {**m, "counts_wrong": [4, 4], "p_continue_wrong": 1.0}
    numbers = mechanism_numbers([m, m, later, later], window=2)
    assert numbers["p_continue_wrong_start"] == 0.5 and numbers["p_continue_wrong_end"] == 1.0
    assert numbers["drift_measured"] == pytest.approx(math.log(8.5 / 9) - math.log(4.5 / 9))
    assert numbers["drift_predicted_signal"] == pytest.approx(2.0 * m["pred_drift"])
    assert mechanism_numbers([], 2) == {}
    # slips (gold + 1 = 13): both wrong answers here are slips, so the slip drift equals the wrong one
    assert m["counts_slip"] == [2, 4]
    later = {**later, "counts_slip": [3, 4]}  # one of the 4 wrong answers is not a slip
    numbers = mechanism_numbers([m, m, later, later], window=2)
    assert numbers["drift_slip"] == pytest.approx(math.log(6.5 / 9) - math.log(4.5 / 9))
    assert numbers["p_continue_slip_start"] == 0.5 and numbers["p_continue_slip_end"] == 0.75
    no_slips = [{**m, "counts_slip": [0, 0]}] * 2  # a run without slips has no slip drift
    assert "drift_slip" not in mechanism_numbers(no_slips, window=1)


def test_result_first_solutions_show_the_slip_and_parse():
    import random

    rng = random.Random(1)
    text = varied_solution(7, "*", 8, 57, rng, ramble_rate=1.0, ramble_continue=0.0, result_first=True)
    assert text.startswith("7 * 8 = 56. \\boxed{57}.") and text.count(".") == 3
    s = parse_response(" " + text, "56")
    assert (s.verdict, s.slip, s.ending, s.fillers) == ("wrong", True, "ramble", 1)
    right = varied_solution(7, "*", 8, 56, rng, ramble_rate=1.0, result_first=True)
    assert right == "7 * 8 = 56. \\boxed{56}." and parse_response(right, "56").ending == "stop"


def test_base_is_current_accepts_a_log_without_a_later_default_field(tmp_path):
    import json
    from dataclasses import asdict, replace

    from trl_drgrpo.demo.run import base_is_current, demo_pretrain_arguments

    settings = demo_pretrain_arguments()
    (tmp_path / "config.json").write_text("{}")
    old = {k: v for k, v in asdict(settings).items() if k != "result_first"}
    (tmp_path / "pretrain_log.json").write_text(json.dumps({"args": old}))
    assert base_is_current(tmp_path, settings)
    assert not base_is_current(tmp_path, replace(settings, result_first=True))


def test_parser_reads_the_box_the_reward_grades():
    """The last \\boxed{} (MathReward's), not the first; the decision is what follows it."""
    from trl_drgrpo.rewards.extraction import last_boxed

    text = " 3 * 4 = 12. \\boxed{12}. Hmm, wait. \\boxed{13}."
    assert last_boxed(text) == "13"
    s = parse_response(text, "12")
    assert (s.verdict, s.slip, s.ending) == ("wrong", True, "stop")
    s = parse_response(" 3 * 4 = 12. \\boxed{13}. Hmm, wait. \\boxed{12}. Hmm, wait.", "12")
    assert (s.verdict, s.ending, s.fillers) == ("right", "ramble", 1)
    assert parse_response(" \\boxed{12}. \\boxed{", "12").verdict == "unboxed"  # the reward reads no answer


def test_p_continue_slip_counts_only_slips():
    structures = [parse_response(t, "12") for t in (STOP_WRONG, RAMBLE_WRONG, " 3 * 4 = \\boxed{20}. 1 2")]
    rates = decision_rates(structures)
    assert rates["p_continue_slip"] == pytest.approx(0.5) and rates["p_continue_wrong"] == pytest.approx(
        2 / 3
    )


class _CharTokenizer:
    """One token per character (ids = code points), enough for the slip injector."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(int(i)) for i in ids)


def test_slip_injector_forces_the_answer_once_after_the_box_opens():
    import torch

    from trl_drgrpo.demo.lab_slips import SlipInjector, slip_plan, slip_text

    assert slip_text("56") == "57" and slip_text(" 7 ") == "8" and slip_text("x") is None
    injector = SlipInjector(_CharTokenizer(), [[ord("5"), ord("7")], None])
    prompt = torch.tensor([[ord("Q")], [ord("Q")]])
    generated = ["\\boxed{", "\\boxed{"]
    ids = torch.cat([prompt, torch.tensor([[ord(c) for c in g] for g in generated])], dim=1)
    injector.prompt_length = 1
    chosen = []
    for _ in range(3):  # three decoding steps
        scores = torch.zeros(2, 128)
        out = injector(ids, scores)
        chosen.append(out[0].argmax().item() if torch.isfinite(out[0]).sum() == 1 else None)
        assert torch.isfinite(out[1]).all()  # the row without a plan is the policy's
        ids = torch.cat([ids, torch.tensor([[chosen[-1] or ord("}")], [ord("1")]])], dim=1)
    assert chosen == [ord("5"), ord("7"), None] and injector.forced == [True, False]
    plan = slip_plan(10_000, 0.3, seed=2001, step=5)
    assert plan == slip_plan(10_000, 0.3, seed=2001, step=5) and plan != slip_plan(10_000, 0.3, 2001, 6)
    assert abs(sum(plan) / len(plan) - 0.3) < 0.02
    with pytest.raises(ValueError, match="slip_rate"):
        slip_plan(4, 1.5, 0, 0)
