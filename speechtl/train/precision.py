"""Mixed precision (``train.amp``): bf16 or fp16 autocast on a GPU, full precision elsewhere.

bf16 keeps fp32's exponent range, so it needs no loss scaling; fp16 does, and a
``GradScaler`` multiplies the loss before backward and skips the updates whose
gradients overflowed (lowering the scale), which are then not the model's fault.
On a CPU autocast would mean bf16 matmuls at a cost in accuracy for no memory a
small model needs, so ``amp`` is a no-op there, said once in the log.
"""

import contextlib
import logging
from dataclasses import dataclass

import torch

from speechtl.errors import SpeechtlError

AMP_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    """How forward passes run (``autocast()``) and whether backward goes through a scaler."""

    name: str = "none"
    device_type: str = "cpu"
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def make_precision(amp: str, device: torch.device) -> Precision:
    """The :class:`Precision` of ``train.amp`` (none, bf16, fp16) on ``device``."""
    if amp not in AMP_DTYPES:
        raise SpeechtlError(f"train.amp must be one of {', '.join(AMP_DTYPES)}, got {amp!r}. Fix: the [train] section")
    if amp == "none":
        return Precision()
    if device.type != "cuda":
        logging.info(f"amp: {amp} asked for, but training runs on {device}: full precision (autocast is a GPU option)")
        return Precision(device_type=device.type)
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise SpeechtlError(
            f"amp: bf16 asked for, but {torch.cuda.get_device_name(device)} has no bf16. Fix: amp: fp16"
        )
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    logging.info(f"mixed precision: {amp} autocast on {device}" + (" with a gradient scaler" if scaler else ""))
    return Precision(amp, "cuda", AMP_DTYPES[amp], scaler)
