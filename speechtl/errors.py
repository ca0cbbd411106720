"""User-facing errors.

A :class:`SpeechtlError` carries a message written for the person running a
recipe: it names the file at fault and says how to fix it. The CLI prints it
without a traceback; anything else is a bug and keeps its traceback.
"""


class SpeechtlError(Exception):
    """An error in the user's input or setup, with a message that says the fix."""
