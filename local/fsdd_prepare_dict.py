#!/usr/bin/env python3
"""Write the FSDD recipe's dict: one CTC unit per digit word, and the LM text.

Usage: local/fsdd_prepare_dict.py <lm-text> <dict-dir>

Whole-word units suit a ten-word task: each word is one output of the
network, a real utterance (~0.5 s, single digit) is a handful of frames, and
the same units serve the synthetic source and the real target, so every
output row transfers. The LM text (the source's digit strings) trains G.
"""

import sys
from pathlib import Path

from speechtl.data.corpora.fsdd import DIGIT_WORDS


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    lm_text, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    (out / "lexicon.txt").write_text("".join(f"{w} {w}\n" for w in DIGIT_WORDS), encoding="utf-8")
    (out / "lm_train.txt").write_text(lm_text.read_text(encoding="utf-8"), encoding="utf-8")


if __name__ == "__main__":
    main()
