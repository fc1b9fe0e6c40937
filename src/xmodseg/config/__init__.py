"""The workflow config as typed models (`models`) and the resolver from its names to paths (`resolve`)."""

from xmodseg.config.models import ExperimentConfig, InputRef, LabelBudget, TranslatorConfig, WorkflowConfig

__all__ = ["ExperimentConfig", "InputRef", "LabelBudget", "TranslatorConfig", "WorkflowConfig"]
