"""Acoustic models: an encoder from the registry plus a CTC output layer."""

from speechtl.models.ctc import CtcModel, ModelConfig, build_model
from speechtl.models.encoders import ENCODERS

__all__ = ["ENCODERS", "CtcModel", "ModelConfig", "build_model"]
