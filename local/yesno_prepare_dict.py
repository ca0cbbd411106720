#!/usr/bin/env python3
"""yesno: write <dict-dir>/lexicon.txt (one unit per word, as Kaldi's recipe) and
<dict-dir>/lm_train.txt (the train transcripts, for the n-gram LM).

Usage: local/yesno_prepare_dict.py <manifest-dir> <dict-dir>
"""

import sys
from pathlib import Path

from lhotse import SupervisionSet

from speechtl.data.corpora.yesno import LEXICON
from speechtl.lang.lexicon import lexicon_from_dict, write_lexicon


def main(manifest_dir: Path, dict_dir: Path) -> None:
    dict_dir.mkdir(parents=True, exist_ok=True)
    write_lexicon(lexicon_from_dict(LEXICON), dict_dir / "lexicon.txt")
    sups = SupervisionSet.from_file(manifest_dir / "yesno_supervisions_train.jsonl.gz")
    (dict_dir / "lm_train.txt").write_text("".join(s.text + "\n" for s in sups), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
