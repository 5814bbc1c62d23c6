"""Training engine: configs, data, losses and the :class:`Trainer` loop (built on flowsr.models).

    from flowsr.train import Trainer
    Trainer("flowsr/recipes/hcflow_rescaling_x4_tiny.yaml").run()

See ``docs/training.md``.
"""

from flowsr.train.config import ConfigError, TrainingConfig, config_from_dict, config_to_dict, load_config
from flowsr.train.trainer import Trainer, TrainingError, latest_checkpoint

__all__ = [
    "ConfigError",
    "Trainer",
    "TrainingConfig",
    "TrainingError",
    "config_from_dict",
    "config_to_dict",
    "latest_checkpoint",
    "load_config",
]
