"""Training and adaptation methods, by name (``--method``).

A method is a small class the one Trainer calls: it decides how the model is
initialised, which parameters train at what rate, which data it sees and any
extra loss. No method copies the training loop. One module per family:
finetune (fine-tuning), peft (adapter, lora), alignment (dann, mmd, coral,
reweight), distill (kd), pseudo (pseudo-label, balanced-pseudo-label: its labels balanced by
speechtl.adapt.balance), meta (reptile, fomaml), ssl,
speaker (speaker-adversarial, entropy: for speakers never heard), vtln (a warp
factor per new voice).
"""

from speechtl.adapt import alignment, distill, finetune, meta, peft, pseudo, speaker, ssl, vtln  # noqa: F401  (register their methods)
from speechtl.adapt.base import METHODS, Method, get_method, register_method

__all__ = ["METHODS", "Method", "get_method", "register_method"]
