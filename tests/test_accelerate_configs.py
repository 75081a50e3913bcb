"""Every accelerate config is valid for `accelerate launch` and says what its name promises."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser

CONFIG_DIR = Path(__file__).resolve().parents[1] / "accelerate_configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))

# name -> (distributed_type, num_processes, zero_stage or None, use_cpu)
EXPECTED = {
    "zero2": ("DEEPSPEED", 8, 2, False),
    "zero3": ("DEEPSPEED", 8, 3, False),
    "ddp": ("MULTI_GPU", 8, None, False),
    "single_gpu": ("NO", 1, None, False),
    "multinode_zero2": ("DEEPSPEED", 16, 2, False),
    "cpu": ("NO", 1, None, True),
    "cpu_ddp": ("MULTI_GPU", 2, None, True),
    "cpu_zero2": ("DEEPSPEED", 2, 2, True),
    "cpu_zero3": ("DEEPSPEED", 2, 3, True),
}


def test_all_expected_configs_exist():
    assert {p.stem for p in CONFIGS} == set(EXPECTED)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_with_expected_settings(path):
    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    dist_type, num_processes, zero_stage, use_cpu = EXPECTED[path.stem]
    assert str(config.distributed_type).split(".")[-1] == dist_type
    assert config.num_processes == num_processes
    assert config.use_cpu is use_cpu
    assert config.mixed_precision == ("no" if use_cpu else "bf16")
    if zero_stage is None:
        assert not config.deepspeed_config
    else:
        assert config.deepspeed_config["zero_stage"] == zero_stage
        # a top-level mixed_precision next to a deepspeed_config_file is rejected by accelerate
        assert "deepspeed_config_file" not in config.deepspeed_config


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_accelerate_launch_accepts_config(path):
    args = launch_command_parser().parse_args(
        ["--config_file", str(path), "recipes/train.py", "--config", "x.yaml"]
    )
    args, _, _ = _validate_launch_command(args)
    dist_type, num_processes, zero_stage, _ = EXPECTED[path.stem]
    assert args.num_processes == num_processes
    assert args.use_deepspeed == (dist_type == "DEEPSPEED")
    assert args.multi_gpu == (dist_type == "MULTI_GPU")
    # `--cpu` would silently drop DeepSpeed / multi-process: CPU configs must not set it
    assert not args.cpu
    if zero_stage is not None:
        assert args.zero_stage == zero_stage
