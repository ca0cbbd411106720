"""Units, lexicons, n-gram LMs and decoding graphs (H, L, G, HLG) with kaldifst.

Files follow icefall's lang dir: tokens.txt, words.txt, lexicon.txt,
lexicon_disambig.txt, L_disambig.fst, G.arpa, G.fst, HLG.fst.
"""

from speechtl.lang.lang_dir import Lang

__all__ = ["Lang"]
