"""Where a pretrained model named by ``whisper:``/``hf:`` comes from: a local path or a hub id."""


def is_hub_id(location: str) -> bool:
    """``owner/name`` that is no local path (``./x``, ``/x``, ``~/x``, ``a/b/c``): fetched from the
    Hugging Face hub, or found in its cache. Anything else is a path, which must exist."""
    return location.count("/") == 1 and not location.startswith((".", "/", "~"))
