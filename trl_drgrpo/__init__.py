"""trl_drgrpo: Dr. GRPO ("GRPO done right") and the R1-Zero study's toolkit on top of TRL."""

from .config import DrGRPOConfig, DrGRPOScriptArguments
from .templates import Template, available_templates, get_template, register_template
from .trainer import DrGRPOTrainer

__version__ = "0.1.0"

__all__ = [
    "DrGRPOConfig",
    "DrGRPOScriptArguments",
    "DrGRPOTrainer",
    "Template",
    "available_templates",
    "get_template",
    "register_template",
]
