"""speechtl: transfer learning for speech recognition.

Train an acoustic model where labelled data is plentiful, adapt it where it is
scarce, and measure how much each adaptation method helps. Recipes under
``egs/`` configure; this package does the work.
"""

__version__ = "0.1.0"
