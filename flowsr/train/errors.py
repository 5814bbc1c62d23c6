"""The two errors of the training engine (a module of its own so every part can raise them)."""

from __future__ import annotations

__all__ = ["ConfigError", "TrainingError"]


class ConfigError(ValueError):
    """A training configuration is invalid (the message names the offending key or file)."""


class TrainingError(RuntimeError):
    """Training cannot go on: a checkpoint does not match the configuration, every checkpoint of
    the run folder is damaged, the run folder is in use, the disk is full, every step of a run
    was skipped, ... The message is one line that says what and where."""
