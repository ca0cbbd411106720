"""Where a pretrained model named by ``whisper:``/``hf:`` comes from: a local path or a hub id."""

import contextlib


def is_hub_id(location: str) -> bool:
    """``owner/name`` that is no local path (``./x``, ``/x``, ``~/x``, ``a/b/c``): fetched from the
    Hugging Face hub, or found in its cache. Anything else is a path, which must exist."""
    return location.count("/") == 1 and not location.startswith((".", "/", "~"))


@contextlib.contextmanager
def quiet_transformers():
    """transformers' logger at ERROR for a while: its generate warns about our settings on every call."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)
