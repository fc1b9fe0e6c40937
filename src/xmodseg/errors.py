"""Exceptions that carry a user-facing message naming the offending file or config key."""


class XmodsegError(Exception):
    """Base class: the CLI prints these without a traceback."""


class InputDataError(XmodsegError):
    """A data file is missing, unreadable or inconsistent (the message names the file)."""


class ConfigError(XmodsegError):
    """A configuration value is invalid (the message names the key)."""


class SplitLeakError(XmodsegError):
    """A test case would be used for training, normalisation statistics or model selection."""


class TrainingDivergedError(XmodsegError):
    """A loss became NaN/Inf; the last good checkpoint is kept."""


class TrainingIncompleteError(XmodsegError):
    """Training stopped before its last iteration (wall-clock limit); no model is written."""
