"""Training engine: recipes, configs, data, objectives and the :class:`Trainer` loop (built on
flowsr.models), plus :func:`~flowsr.train.parity.replay_official`, the proof that it trains what
the official HCFlow code trains.

    from flowsr.train import Trainer
    Trainer("hcflow_rescaling_x4_tiny").run()      # a bundled recipe name or a YAML path

See ``docs/training.md``.
"""

from flowsr.train.checkpoints import latest_checkpoint
from flowsr.train.config import TrainingConfig, config_from_dict, config_to_dict, load_config
from flowsr.train.errors import ConfigError, TrainingError
from flowsr.train.recipes import list_recipes, resolve_recipe
from flowsr.train.trainer import Trainer

__all__ = [
    "ConfigError",
    "Trainer",
    "TrainingConfig",
    "TrainingError",
    "config_from_dict",
    "config_to_dict",
    "latest_checkpoint",
    "list_recipes",
    "load_config",
    "replay_official",
    "resolve_recipe",
]


def __getattr__(name: str):
    # the parity replay imports the converters: only when asked for
    if name == "replay_official":
        from flowsr.train.parity import replay_official

        return replay_official
    raise AttributeError(f"module 'flowsr.train' has no attribute {name!r}")
