"""User-facing errors.

A :class:`SpeechtlError` carries a message written for the person running a
recipe: it names the file at fault and says how to fix it. The CLI prints it
without a traceback; anything else is a bug and keeps its traceback.
"""


class SpeechtlError(Exception):
    """An error in the user's input or setup, with a message that says the fix."""


class Unavailable(SpeechtlError):
    """A pretrained source cannot give a zero-shot row (no tokenizer, an OpenAI .pt file, an old generation
    config, an English-only model asked for another language): an error of ``speechtl zero-shot``, a
    warning and no row in a recipe (``skip_unavailable``), whose other results stand."""


class NoOwnDecoder(Unavailable):
    """The source has no output layer of its own to transcribe with (a pretrained-only wav2vec2, HuBERT,
    WavLM): a recipe that asks for its zero-shot row just has none, which is no cause for a warning."""
