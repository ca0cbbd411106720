"""Training and adaptation methods, by name (``--method``).

A method is a small class the one Trainer calls: it decides how the model is
initialised, which parameters train at what rate, and any extra loss. No
method copies the training loop.
"""

from speechtl.adapt import finetune  # noqa: F401  (registers the fine-tuning family)
from speechtl.adapt.base import METHODS, Method, get_method, register_method

__all__ = ["METHODS", "Method", "get_method", "register_method"]
