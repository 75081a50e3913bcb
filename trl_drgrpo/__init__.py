"""trl_drgrpo: Dr. GRPO ("GRPO done right") and the R1-Zero study's toolkit on top of TRL."""

from .templates import Template, available_templates, get_template, register_template

__version__ = "0.1.0"

__all__ = ["Template", "available_templates", "get_template", "register_template"]
