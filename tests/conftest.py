"""Shared pytest fixtures (append new fixtures; keep the others intact)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Folder with a tiny random Qwen2 model and its byte-level tokenizer (built once per session)."""
    from trl_drgrpo.demo.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"), seed=0)


def _suite_path() -> Path:
    return Path(
        os.environ.get("TRL_DRGRPO_EVAL_SUITE", REPO_ROOT.parent / "shared" / "data" / "evaluation_suite")
    )


@pytest.fixture(scope="session")
def eval_suite_path() -> Path:
    """The local evaluation suite (``$TRL_DRGRPO_EVAL_SUITE`` or ``<repo>/../shared/data/evaluation_suite``), or skip."""
    path = _suite_path()
    if not path.is_dir():
        pytest.skip(f"evaluation suite not found at {path}")
    return path


# ---- vLLM (CPU build in `make test-vllm`, or a GPU) ---------------------------------------------------------
# `make test-vllm` sets TRL_DRGRPO_REQUIRE_VLLM=1: there a `vllm` test that cannot run fails instead of skipping.
REQUIRE_VLLM = os.environ.get("TRL_DRGRPO_REQUIRE_VLLM", "") not in ("", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``vllm`` tests where vLLM cannot run, unless they are required (then they fail at setup)."""
    marked = [item for item in items if item.get_closest_marker("vllm")]
    if not marked or REQUIRE_VLLM:
        return
    from trl_drgrpo.evaluation.backends import vllm_platform

    if vllm_platform() is None:
        skip = pytest.mark.skip(
            reason="vLLM cannot run here (make install-vllm && make test-vllm runs these)"
        )
        for item in marked:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def vllm_platform_name() -> str:
    """vLLM's platform here (``cpu``, ``cuda``...); fails when vLLM cannot run (the test was required)."""
    from trl_drgrpo.evaluation.backends import vllm_platform

    name = vllm_platform()
    if name is None:
        pytest.fail("vLLM is required (TRL_DRGRPO_REQUIRE_VLLM=1) but cannot run here: make install-vllm")
    return name


@pytest.fixture(scope="session")
def vllm_twin_dir(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, vllm_platform_name
) -> str:
    """The tiny model at a width vLLM accepts, trained to answer in R1 format (tests/vllm_twin.py)."""
    from tests.vllm_twin import build_twin

    if REQUIRE_VLLM and not _suite_path().is_dir():  # required vLLM tests must not skip for want of data
        pytest.fail(f"the vLLM tests need the evaluation suite: not found at {_suite_path()}")
    return build_twin(tmp_path_factory.mktemp("vllm_twin"), request.getfixturevalue("eval_suite_path"))
