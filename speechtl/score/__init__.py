"""WER with kaldialign, icefall-style recogs/errs/wer-summary files, and results.tsv."""
