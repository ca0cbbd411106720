"""The one Trainer, its data loaders and checkpoints."""

from speechtl.train.trainer import TrainConfig, Trainer

__all__ = ["TrainConfig", "Trainer"]
