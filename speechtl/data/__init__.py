"""Corpora, audio validation and manifests.

Importing the package registers :class:`speechtl.data.downmix.DownmixToMono`, the transform an
imported stereo file's ``Recording`` names: lhotse looks a transform up by class name when a
manifest is read, so every process that reads manifests through ``speechtl.data`` (validation,
fbank, datasets, raw-audio encoders) can load such a recording.
"""

from speechtl.data import downmix as _downmix  # noqa: F401  (registers DownmixToMono with lhotse)
