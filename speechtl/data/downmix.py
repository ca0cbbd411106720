"""Down-mixing stereo recordings to mono, lazily, as a lhotse audio transform.

A user's recordings are often stereo (phones, field recorders). The models take
one channel; taking the first would lose a speaker recorded on the second, so an
imported multi-channel file gets :class:`DownmixToMono` in its ``Recording``'s
transforms: the channels are averaged when the audio is loaded (fbank,
decoding), and no mono copy is written to disk.

lhotse finds a transform by its class name in a registry filled when the class
is defined, so every process that loads such a recording imports this module:
importing the ``speechtl.data`` package does.
"""

from dataclasses import dataclass

import numpy as np
from lhotse.augmentation import AudioTransform


@dataclass
class DownmixToMono(AudioTransform):
    """Average the channels of ``(channels, samples)`` audio into ``(1, samples)``."""

    def __call__(self, samples: np.ndarray, sampling_rate: int) -> np.ndarray:
        if samples.ndim == 2 and samples.shape[0] > 1:
            return samples.mean(axis=0, keepdims=True).astype(samples.dtype)
        return samples

    def reverse_timestamps(self, offset: float, duration: float | None, sampling_rate: int):
        return offset, duration  # time is unchanged


#: The serialized form stored in a Recording's ``transforms``.
DOWNMIX = DownmixToMono().to_dict()


def is_downmixed(recording) -> bool:
    """Whether ``recording``'s channels are averaged when it is read (a multi-channel import)."""
    return any(isinstance(t, DownmixToMono) for t in recording.transforms or [])
