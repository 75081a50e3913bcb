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


@pytest.fixture(scope="session")
def eval_suite_path() -> Path:
    """The local evaluation suite (``$TRL_DRGRPO_EVAL_SUITE`` or ``<repo>/../shared/data/evaluation_suite``), or skip."""
    path = Path(
        os.environ.get("TRL_DRGRPO_EVAL_SUITE", REPO_ROOT.parent / "shared" / "data" / "evaluation_suite")
    )
    if not path.is_dir():
        pytest.skip(f"evaluation suite not found at {path}")
    return path
