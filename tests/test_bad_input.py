"""Bad input, through the commands a user runs: every case exits non-zero with a message
naming the file and the fix, and leaves what earlier runs wrote as it was.

Each case runs ``speechtl ...`` (``speechtl.cli.main``, which prints a SpeechtlError
without a traceback and returns 1; anything else escapes and fails the test) or a
recipe stage, on a 4-file yesno corpus with a random-weight model (nothing here
needs a trained one). "Intact" is checked on bytes and mtimes of the files an
earlier good run wrote (:func:`snapshot`), and on no ``.partial.`` file left behind.
"""

import contextlib
import errno
import itertools
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import REPO, copy_recipe, run, shared_data
from lhotse import CutSet

from speechtl.atomic import PARTIAL
from speechtl.cli import main
from speechtl.data.corpora.yesno import LEXICON
from speechtl.lang import Lang
from speechtl.lang.lexicon import lexicon_from_dict, write_lexicon
from speechtl.models import ModelConfig, build_model
from speechtl.train.checkpoint import save_checkpoint

BAD = "1_1_1_1_1_1_1_1.wav"  # a name yesno accepts, so only the content is wrong
FBANK = ["--prefix", "yesno", "--splits", "train", "test", "--sampling-rate", "8000", "--num-mel-bins", "23"]
TINY = {"hidden_dim": 16, "kernel_sizes": [3], "dilations": [1]}


def cli(capsys, *args) -> tuple[int, str]:
    """``speechtl args`` in-process: (exit status, what it logged)."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


def snapshot(d: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``d`` but job logs (each run writes its own): its bytes and mtime
    (so a rewrite with equal bytes shows too)."""
    files = (p for p in sorted(d.rglob("*")) if p.is_file() and p.suffix != ".log")
    return {str(p.relative_to(d)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def partials(d: Path) -> list[Path]:
    return sorted(p for p in Path(d).rglob(f"{PARTIAL}*"))


def fails(capsys, *args) -> str:
    """Run a command that must fail cleanly; returns its error lines."""
    rc, err = cli(capsys, *args)
    assert rc == 1, err[-2000:]
    assert "Traceback" not in err
    return "\n".join(line for line in err.splitlines() if " ERROR " in line or not line[:4].isdigit())


@pytest.fixture(scope="module")
def work(yesno_dir, tmp_path_factory):
    """4 yesno wavs, their manifests and fbank, a word lang dir and a random-weight model."""
    d = tmp_path_factory.mktemp("bad_input")
    corpus = d / "corpus"
    corpus.mkdir()
    for f in sorted(yesno_dir.glob("*.wav"))[:4]:
        shutil.copy(f, corpus / f.name)
    assert main(["prepare", "yesno", "--corpus-dir", str(corpus), "--output-dir", str(d / "manifests")]) == 0
    assert (
        main(["compute-fbank", "--manifest-dir", str(d / "manifests"), "--output-dir", str(d / "fbank"), *FBANK]) == 0
    )
    write_lexicon(lexicon_from_dict(LEXICON), d / "lexicon.txt")
    (d / "lm.txt").write_text("YES NO\nNO YES\n")
    lang_args = ["--lexicon", d / "lexicon.txt", "--lm-text", d / "lm.txt", "--lang-dir", d / "lang", "--lm-order", "1"]
    assert main(["prepare-lang", *map(str, lang_args)]) == 0
    lang = Lang(d / "lang")
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder="tdnn", num_features=23, encoder_options=TINY), lang.vocab_size)
    features = {"sampling_rate": 8000, "num_mel_bins": 23, "frame_shift": 0.01}
    save_checkpoint(d / "model.pt", model, tokens=lang.token2id, features=features)
    return d


def bad_corpus(work: Path, tmp_path: Path, write) -> Path:
    """The 4 good wavs plus ``BAD``, written by ``write(path)``."""
    corpus = tmp_path / "corpus"
    shutil.copytree(work / "corpus", corpus)
    write(corpus / BAD)
    return corpus


def good_wave(work: Path) -> np.ndarray:
    return sf.read(sorted((work / "corpus").glob("*.wav"))[0], dtype="float32")[0]


def mp4_bytes(tmp_path: Path) -> bytes:
    """An MP4 (AAC) file from ffmpeg when installed, else an ISO-BMFF header (what sniffing sees)."""
    if shutil.which("ffmpeg"):
        out = tmp_path / "x.mp4"
        cmd = ["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=1", str(out)]
        if subprocess.run(cmd, capture_output=True).returncode == 0:
            return out.read_bytes()
    return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(512)


def float_wave(value: float):
    def write(p: Path) -> None:
        x = np.zeros(8000, dtype="float32")
        x[100] = value
        sf.write(p, x, 8000, subtype="FLOAT")

    return write


def truncated(p: Path, keep: int) -> None:
    wav = sorted((shared_data() / "yesno" / "waves_yesno").glob("*.wav"))[0].read_bytes()
    p.write_bytes(wav[:keep])


# case -> (how the bad file is written, words its error must contain)
AUDIO_CASES = {
    "empty-0-bytes": (lambda p, t: p.write_bytes(b""), "empty (0 bytes)"),
    "zero-samples": (lambda p, t: sf.write(p, np.zeros(0, dtype="float32"), 8000), "no audio samples"),
    "header-only": (lambda p, t: truncated(p, 44), "truncated"),
    "truncated": (lambda p, t: truncated(p, 2000), "its header announces"),
    "corrupt-riff": (lambda p, t: p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk"), "cannot be decoded"),
    "text-named-wav": (lambda p, t: p.write_bytes(b"YES NO YES\n"), "the content is text"),
    "mp4-named-wav": (lambda p, t: p.write_bytes(mp4_bytes(t)), "the content is mp4/m4a"),
    "webm-named-wav": (lambda p, t: p.write_bytes(bytes.fromhex("1a45dfa3") + bytes(300)), "the content is webm/mkv"),
    "3-channels": (lambda p, t: sf.write(p, np.zeros((8000, 3), dtype="float32"), 8000), "3 channels"),
    "nan-samples": (lambda p, t: float_wave(math.nan)(p), "NaN or Inf"),
    "inf-samples": (lambda p, t: float_wave(math.inf)(p), "NaN or Inf"),
    "10-ms": (lambda p, t: sf.write(p, np.zeros(80, dtype="float32"), 8000), "shorter than one 25 ms"),
}


@pytest.mark.parametrize("case", list(AUDIO_CASES))
def test_bad_audio_stops_prepare_and_keeps_old_manifests(case, work, tmp_path, capsys):
    write, words = AUDIO_CASES[case]
    corpus = bad_corpus(work, tmp_path, lambda p: write(p, tmp_path))
    out = tmp_path / "manifests"
    shutil.copytree(work / "manifests", out)  # an earlier good run's manifests
    before = snapshot(out)
    msg = fails(capsys, "prepare", "yesno", "--corpus-dir", corpus, "--output-dir", out)
    assert BAD in msg and words in msg and "--skip-bad-audio" not in msg and "--skip-bad" in msg, msg
    assert snapshot(out) == before, "the earlier manifests must stay as they were"


def test_skip_bad_audio_lists_every_bad_file(work, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    shutil.copytree(work / "corpus", corpus)
    free = ("_".join(bits) + ".wav" for bits in itertools.product("01", repeat=8))
    free = (n for n in free if not (corpus / n).exists())
    names = {}
    for (write, words), name in zip(AUDIO_CASES.values(), free, strict=False):
        write(corpus / name, tmp_path)
        names[name] = words
    out = tmp_path / "manifests"
    rc, err = cli(capsys, "prepare", "yesno", "--corpus-dir", corpus, "--output-dir", out, "--skip-bad-audio", "true")
    assert rc == 0, err
    listed = dict(line.split("\t") for line in (out / "bad_audio.txt").read_text().splitlines())
    assert {Path(p).name: why for p, why in listed.items()}.keys() == names.keys()
    for p, why in listed.items():
        assert names[Path(p).name] in why
    kept = {c.id for split in ("train", "test") for c in CutSet.from_file(out / f"yesno_recordings_{split}.jsonl.gz")}
    assert kept == {p.stem for p in (work / "corpus").glob("*.wav")}


def test_bad_audio_in_fsdd(fsdd_dir, tmp_path, capsys):
    corpus = tmp_path / "recordings"
    corpus.mkdir()
    for f in sorted(fsdd_dir.glob("*_jackson_*.wav"))[:12]:
        shutil.copy(f, corpus / f.name)
    (corpus / "3_jackson_7.wav").write_bytes(b"<html>404</html>")
    msg = fails(capsys, "prepare", "fsdd", "--corpus-dir", corpus, "--output-dir", tmp_path / "m")
    assert "3_jackson_7.wav" in msg and "content is text" in msg
    assert not (tmp_path / "m").exists()


def test_ten_minute_utterance_is_kept_with_a_warning(work, tmp_path, capsys):
    x = good_wave(work)
    corpus = bad_corpus(work, tmp_path, lambda p: sf.write(p, np.resize(x, 600 * 8000), 8000))
    rc, err = cli(capsys, "prepare", "yesno", "--corpus-dir", corpus, "--output-dir", tmp_path / "m")
    assert rc == 0, err
    assert "longer than 60 s" in err and BAD in err and "600 s" in err
    rc, err = cli(capsys, "compute-fbank", "--manifest-dir", tmp_path / "m", "--output-dir", tmp_path / "f", *FBANK)
    assert rc == 0, err
    cuts = [c for split in ("train", "test") for c in CutSet.from_file(tmp_path / "f" / f"yesno_cuts_{split}.jsonl.gz")]
    cut = next(c for c in cuts if c.recording_id == Path(BAD).stem)
    assert abs(cut.features.num_frames - 60000) <= 2  # all 600 s at a 10 ms shift


def write_manifests(corpus: Path, out: Path) -> None:
    """yesno manifests straight from lhotse, without prepare's checks (a user's own manifests)."""
    from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet

    from speechtl.data.corpora.yesno import text_from_name
    from speechtl.data.layout import write_split

    recs = [Recording.from_file(p) for p in sorted(corpus.glob("*.wav"))]
    sups = [SupervisionSegment(r.id, r.id, 0.0, r.duration, text=text_from_name(r.id)) for r in recs]
    for split, part in (("train", slice(0, None, 2)), ("test", slice(1, None, 2))):
        write_split(
            out, "yesno", split, RecordingSet.from_recordings(recs[part]), SupervisionSet.from_segments(sups[part])
        )


def set_nan(p: Path) -> None:
    x = sf.read(p, dtype="float32")[0]
    x[500] = math.nan
    sf.write(p, x, 8000, subtype="FLOAT")


# case -> (change before the manifests are made, change after, words of the error)
FBANK_CASES = {
    "nan": (set_nan, None, "NaN or Inf"),
    "2-ms": (lambda p: sf.write(p, np.zeros(16, dtype="float32"), 8000), None, "gives no fbank frame"),
    "replaced-by-junk": (None, lambda p: p.write_bytes(b"junk" * 100), "cannot read audio"),
    "cut-short": (None, lambda p: p.write_bytes(p.read_bytes()[:3000]), "cannot read audio"),
}


@pytest.mark.parametrize("case", list(FBANK_CASES))
def test_bad_audio_in_manifests_stops_fbank_and_keeps_old_features(case, work, tmp_path, capsys):
    """Manifests not made by ``speechtl prepare`` (or audio changed since): the fbank stage,
    over an output dir holding an earlier run's features, names the cut and its file."""
    before_manifests, after_manifests, words = FBANK_CASES[case]
    corpus = tmp_path / "corpus"
    shutil.copytree(work / "corpus", corpus)
    victim = sorted(corpus.glob("*.wav"))[2]  # a train cut
    if before_manifests:
        before_manifests(victim)
    write_manifests(corpus, tmp_path / "m")
    if after_manifests:
        after_manifests(victim)
    fbank = tmp_path / "fbank"
    shutil.copytree(work / "fbank", fbank)
    before = snapshot(fbank)
    msg = fails(capsys, "compute-fbank", "--manifest-dir", tmp_path / "m", "--output-dir", fbank, *FBANK)
    assert victim.stem in msg and str(victim) in msg and words in msg and "Fix:" in msg, msg
    after = snapshot(fbank)
    for name in ("yesno_cuts_train.jsonl.gz", "yesno_cuts_test.jsonl.gz", "yesno_feats_train/feats.0.lca"):
        assert after[name] == before[name], f"{name} of the earlier run must stay as it was"
    assert not partials(fbank)


# ---- transcripts and LM text


@pytest.mark.parametrize(
    "content,words",
    [(b"", "has no words (empty)"), (b"  \n\t\n \n", "only whitespace"), (b"YES NO\nNO \xe9S\n", "not UTF-8")],
    ids=["empty", "whitespace", "latin1"],
)
def test_bad_lm_text_stops_prepare_lang_and_keeps_the_lang_dir(content, words, work, tmp_path, capsys):
    text = tmp_path / "lm.txt"
    text.write_bytes(content)
    lang = tmp_path / "lang"
    shutil.copytree(work / "lang", lang)
    before = snapshot(lang)
    msg = fails(capsys, "prepare-lang", "--lexicon", work / "lexicon.txt", "--lm-text", text, "--lang-dir", lang)
    assert str(text) in msg and words in msg and "Fix:" in msg, msg
    if words == "not UTF-8":
        assert "line 2" in msg and "0xe9" in msg and "iconv" in msg
    assert snapshot(lang) == before
    for units in ("char", "bpe"):
        msg = fails(capsys, "prepare-lang", "--units", units, "--lm-text", text, "--lang-dir", tmp_path / units)
        assert words in msg and not (tmp_path / units).exists()


def test_non_utf8_lexicon_and_sentences(work, tmp_path, capsys):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_bytes(b"YES Y\nN\xc3O N\n\xff\n")
    msg = fails(
        capsys, "prepare-lang", "--lexicon", lexicon, "--lm-text", work / "lm.txt", "--lang-dir", tmp_path / "l"
    )
    assert str(lexicon) in msg and "line 2" in msg and "0xc3" in msg
    sentences = tmp_path / "sentences.txt"
    sentences.write_bytes("tá go maith\n".encode("utf-16"))
    msg = fails(
        capsys, "synthesize", "--text", sentences, "--voices", tmp_path / "voices.yaml", "--output-dir", tmp_path / "o",
        "--prefix", "x", "--split", "train",
    )  # fmt: skip
    assert str(sentences) in msg and "not UTF-8" in msg and "line 1" in msg
    assert not (tmp_path / "o").exists()


def cuts_with_text(work: Path, path: Path, texts: list[str]) -> Path:
    cuts = list(CutSet.from_file(work / "fbank" / "yesno_cuts_test.jsonl.gz"))
    for cut, text in zip(cuts, texts, strict=True):
        cut.supervisions[0].text = text
    CutSet.from_cuts(cuts).to_file(path)
    return path


def decode(work: Path, out: Path, cuts: Path | None = None, lang: Path | None = None, ckpt: Path | None = None):
    return (
        "decode", "--checkpoint", ckpt or work / "model.pt", "--lang-dir", lang or work / "lang",
        "--cuts", cuts or work / "fbank" / "yesno_cuts_test.jsonl.gz", "--test-set", "test", "--out-dir", out,
        "--decoding", "greedy,hlg",
    )  # fmt: skip


@pytest.mark.parametrize("text", ["", "   \t "], ids=["empty", "whitespace"])
def test_decode_without_any_reference_stops_before_writing(text, work, tmp_path, capsys):
    cuts = cuts_with_text(work, tmp_path / "cuts.jsonl.gz", [text, text])
    msg = fails(capsys, *decode(work, tmp_path / "dec", cuts))
    assert str(cuts) in msg and "no utterance" in msg and "speechtl transcribe" in msg
    assert not [p for p in (tmp_path / "dec").rglob("*") if p.is_file()]


def test_decode_with_some_empty_references_and_oov_words_warns_and_scores(work, tmp_path, capsys):
    cuts = cuts_with_text(work, tmp_path / "cuts.jsonl.gz", ["", "YES MAYBE NO MAYBE"])
    rc, err = cli(capsys, *decode(work, tmp_path / "dec", cuts), "--results", tmp_path / "results.tsv")
    assert rc == 0, err
    assert "1 of 2 utterance(s)" in err and "empty reference" in err
    assert "2 of 4 reference words" in err and "MAYBE" in err and "words.txt" in err
    rows = {r.split("\t")[3]: r.split("\t") for r in (tmp_path / "results.tsv").read_text().splitlines()[1:]}
    assert rows["hlg"][6] == "4"  # every reference word counted, the OOV ones too
    assert int(rows["hlg"][5]) >= 2, "HLG cannot output MAYBE: both count as errors"
    assert rows["hlg"][12] == rows["greedy"][12] == "50.00"  # results.tsv's oov: 2 of the 4 words


def test_decode_from_another_dir_than_the_fbank_stages_names_the_dir(work, tmp_path, capsys, monkeypatch):
    """A recipe's cuts point at data/fbank/... relative to the recipe dir; decoded from elsewhere it
    was lhotse's FileNotFoundError traceback."""
    import os

    from lhotse import CutSet

    cuts = CutSet.from_file(work / "fbank" / "yesno_cuts_test.jsonl.gz").to_eager()
    CutSet.from_cuts(_relative_features(c, work) for c in cuts).to_file(tmp_path / "cuts.jsonl.gz")
    msg = fails(capsys, *decode(work, tmp_path / "dec", tmp_path / "cuts.jsonl.gz"))
    assert "a path relative to the dir their fbank stage ran in" in msg and f"{os.getcwd()} has no fbank/" in msg
    assert "e.g. cd egs/NAME/ASR" in msg  # no dir above these cuts holds the features
    beside = work / "fbank" / "relative_cuts.jsonl.gz"  # a recipe's: the features' dir is above the cuts
    CutSet.from_file(tmp_path / "cuts.jsonl.gz").to_file(beside)
    assert f"Fix: run from that dir: cd {work}" in fails(capsys, *decode(work, tmp_path / "dec", beside))
    monkeypatch.chdir(work)  # the dir the features are relative to
    rc, err = cli(capsys, *decode(work, tmp_path / "dec", tmp_path / "cuts.jsonl.gz"))
    assert rc == 0, err[-2000:]


def _relative_features(cut, base: Path):
    from dataclasses import replace

    return replace(
        cut, features=replace(cut.features, storage_path=str(Path(cut.features.storage_path).relative_to(base)))
    )


# ---- lang dir and checkpoints


@pytest.mark.parametrize("missing", ["tokens.txt", "words.txt", "lexicon.txt", "HLG.fst"])
def test_decode_with_a_missing_lang_file_writes_nothing(missing, work, tmp_path, capsys):
    lang = tmp_path / "lang"
    shutil.copytree(work / "lang", lang)
    (lang / missing).unlink()
    msg = fails(capsys, *decode(work, tmp_path / "dec", lang=lang))
    assert str(lang / missing) in msg and "prepare_lang" in msg
    assert not (tmp_path / "dec").exists() or not any((tmp_path / "dec").iterdir())


def other_checkpoint(work: Path, path: Path, vocab: int = 0, num_features: int = 23, tokens=None) -> Path:
    lang = Lang(work / "lang")
    model = build_model(ModelConfig(num_features=num_features, encoder_options=TINY), vocab or lang.vocab_size)
    save_checkpoint(path, model, tokens=tokens if tokens is not None else lang.token2id)
    return path


def test_decode_with_a_checkpoint_of_other_units_or_features(work, tmp_path, capsys):
    lang = Lang(work / "lang")
    letters = {"<blk>": 0, "A": 1, "B": 2, "C": 3, "#0": 4}
    ckpt = other_checkpoint(work, tmp_path / "abc.pt", vocab=4, tokens=letters)
    msg = fails(capsys, *decode(work, tmp_path / "dec", ckpt=ckpt))
    assert str(ckpt) in msg and "units only in the checkpoint: ['A', 'B', 'C']" in msg and "Fix:" in msg
    swapped = {t: {1: 2, 2: 1}.get(i, i) for t, i in lang.token2id.items()}
    ckpt = other_checkpoint(work, tmp_path / "swapped.pt", tokens=swapped)
    assert "the same units with other ids" in fails(capsys, *decode(work, tmp_path / "dec", ckpt=ckpt))
    ckpt = other_checkpoint(work, tmp_path / "big.pt", vocab=10, tokens={})
    ckpt_state = torch.load(ckpt, weights_only=False)
    del ckpt_state["tokens"]  # an old checkpoint: only its size to go by
    torch.save(ckpt_state, ckpt)
    assert "has 10 output units" in fails(capsys, *decode(work, tmp_path / "dec", ckpt=ckpt))
    ckpt = other_checkpoint(work, tmp_path / "80.pt", num_features=80)
    msg = fails(capsys, *decode(work, tmp_path / "dec", ckpt=ckpt))
    assert "reads 80-dimensional features" in msg and "have 23" in msg and "--num-mel-bins 80" in msg
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert str(tmp_path / "junk.pt") in fails(capsys, *decode(work, tmp_path / "dec", ckpt=tmp_path / "junk.pt"))
    assert not (tmp_path / "dec").exists() or not any((tmp_path / "dec").iterdir())


# ---- configs and the train command

CONF = """model:
  encoder: tdnn
  num_features: 23
  encoder_options: {hidden_dim: 16, kernel_sizes: [3], dilations: [1]}
train:
  num_epochs: 1
  max_duration: 20
"""


@pytest.mark.parametrize(
    "edit,words",
    [
        (("num_epochs: 1", "nmu_epochs: 1"), "unknown option(s) ['nmu_epochs']"),
        (("num_epochs: 1", "num_epochs: three"), "num_epochs must be int, got 'three'"),
        (("num_epochs: 1", "num_epochs: 1.5"), "num_epochs must be int, got 1.5"),
        (("max_duration: 20", "max_duration: yes"), "max_duration must be float, got True"),
        (("max_duration: 20", "max_duration: 2e1"), "YAML reads 2e1 as text; write it with a dot"),
        (("num_features: 23", "num_features: [23]"), "num_features must be int"),
        (("hidden_dim: 16", "hiden_dim: 16"), "unknown option(s) ['hiden_dim']"),
        (("hidden_dim: 16", "hidden_dim: sixteen"), "hidden_dim must be int"),
        (("kernel_sizes: [3]", "kernel_sizes: 3"), "kernel_sizes must be list[int]"),
        (("train:\n  num_epochs: 1\n  max_duration: 20\n", "train: 5\n"), "section(s) ['train'] must be mappings"),
        (("model:", "modle:"), "unknown section(s) ['modle']"),
        (("train:\n", "methods:\n  scratch: {optoins: {}}\ntrain:\n"), "unknown key(s) ['optoins']"),
        (("encoder: tdnn", "encoder: tdnnn"), "unknown encoder 'tdnnn'"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_config_stops_training_before_the_exp_dir_is_touched(edit, words, work, tmp_path, capsys):
    conf = tmp_path / "train.yaml"
    old, new = edit
    assert old in CONF
    conf.write_text(CONF.replace(old, new, 1))
    exp = tmp_path / "exp"
    msg = fails(
        capsys, "train", "--config", conf, "--lang-dir", work / "lang",
        "--train-cuts", work / "fbank" / "yesno_cuts_train.jsonl.gz", "--exp-dir", exp,
    )  # fmt: skip
    assert str(conf) in msg and words in msg, msg
    assert not exp.exists() or not any(exp.iterdir())


def train_args(work: Path, conf: Path, exp: Path, *extra) -> tuple:
    return (
        "train", "--config", conf, "--lang-dir", work / "lang",
        "--train-cuts", work / "fbank" / "yesno_cuts_train.jsonl.gz", "--exp-dir", exp, *extra,
    )  # fmt: skip


def test_training_on_features_of_another_size_or_a_source_of_another_size(work, tmp_path, capsys):
    conf = tmp_path / "train.yaml"
    conf.write_text(CONF.replace("num_features: 23", "num_features: 80"))
    msg = fails(capsys, *train_args(work, conf, tmp_path / "exp"))
    assert str(conf) in msg and "reads 80-dimensional features" in msg and "the training cuts have 23" in msg
    source = other_checkpoint(work, tmp_path / "source80.pt", num_features=80)
    conf.write_text(CONF)
    msg = fails(
        capsys, *train_args(work, conf, tmp_path / "exp", "--method", "finetune", "--source-checkpoint", source)
    )
    assert str(source) in msg and "reads 80-dimensional features" in msg
    assert not any((tmp_path / "exp").iterdir())


def test_missing_corpus_dir(work, tmp_path, capsys):
    for corpus in ("yesno", "fsdd"):
        msg = fails(capsys, "prepare", corpus, "--output-dir", tmp_path / "m")
        assert "--corpus-dir" in msg and f"speechtl download {corpus}" in msg
    msg = fails(capsys, "prepare", "yesno", "--corpus-dir", tmp_path / "nope", "--output-dir", tmp_path / "m")
    assert str(tmp_path / "nope") in msg and "does not exist" in msg
    assert not (tmp_path / "m").exists()


def test_recipe_stage_with_a_missing_corpus_dir_marks_nothing_done(tmp_path):
    recipe = copy_recipe(REPO / "egs" / "yesno" / "ASR", tmp_path)
    r = run(recipe, "--corpus-dir", str(tmp_path / "nope"), "--stage", "1", "--stop-stage", "2")
    assert r.returncode != 0
    assert str(tmp_path / "nope") in r.stderr and "Traceback" not in r.stderr
    assert not list(recipe.rglob(".done"))


# ---- full and read-only disks


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A tmpfs mounted at ``path`` (root only); skips the test where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(d: Path, leave: int) -> None:
    """Fill the file system of ``d`` until about ``leave`` bytes are free."""
    with open(d / "filler", "wb") as f, contextlib.suppress(OSError):
        while shutil.disk_usage(d).free > leave:
            f.write(bytes(min(1 << 16, max(4096, shutil.disk_usage(d).free - leave))))
            f.flush()


def test_full_disk_while_features_are_written(work, tmp_path, capsys):
    """A 1 MB tmpfs holding an earlier run's test features and almost full: the train split's
    features do not fit. The error names the file and the fix, no partial file is left, the
    earlier run's files are untouched, and the same command succeeds once there is room."""
    with tmpfs(tmp_path / "disk", "size=1m") as disk:
        fbank = disk / "fbank"
        shutil.copytree(work / "fbank", fbank)
        (fbank / "yesno_cuts_train.jsonl.gz").unlink()
        shutil.rmtree(fbank / "yesno_feats_train")
        before = snapshot(fbank)
        fill(disk, 12 * 1024)  # room for the job's input and log (a 4 KB page each), not for its features
        msg = fails(capsys, "compute-fbank", "--manifest-dir", work / "manifests", "--output-dir", fbank, *FBANK)
        assert "no space left on the device" in msg and "Fix:" in msg, msg
        assert f"cannot write {fbank}/yesno_feats_train/feats.0.lca" in msg, "it is the features that do not fit"
        assert not partials(fbank)
        assert not (fbank / "yesno_cuts_train.jsonl.gz").exists()
        after = snapshot(fbank)
        assert {k: after[k] for k in before} == before
        (disk / "filler").unlink()
        rc, err = cli(capsys, "compute-fbank", "--manifest-dir", work / "manifests", "--output-dir", fbank, *FBANK)
        assert rc == 0, err
        redone = CutSet.from_file(fbank / "yesno_cuts_train.jsonl.gz")
        for cut, ref in zip(redone, CutSet.from_file(work / "fbank" / "yesno_cuts_train.jsonl.gz"), strict=True):
            np.testing.assert_array_equal(cut.load_features(), ref.load_features())


def test_full_disk_through_a_failing_writer(work, tmp_path, capsys, monkeypatch):
    """The same without root: the feature writer fails as a full disk does."""
    import lhotse

    def no_space(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lhotse.LilcomChunkyWriter, "write", no_space)
    fbank = tmp_path / "fbank"
    shutil.copytree(work / "fbank", fbank)
    before = snapshot(fbank)
    msg = fails(capsys, "compute-fbank", "--manifest-dir", work / "manifests", "--output-dir", fbank, *FBANK)
    assert "no space left on the device" in msg and "feats.0.lca" in msg
    assert snapshot(fbank) == before and not partials(fbank)


def read_only_targets(work: Path, target: Path) -> list[tuple]:
    conf = target.parent / "train.yaml"
    conf.write_text(CONF)
    return [
        ("compute-fbank", "--manifest-dir", work / "manifests", "--output-dir", target / "fbank", *FBANK),
        decode(work, target / "decode"),
        train_args(work, conf, target / "exp"),
    ]


def test_read_only_dirs_are_refused_before_any_work(work, tmp_path, capsys):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        for args in read_only_targets(work, ro):
            msg = fails(capsys, *args)
            assert "not writable" in msg and "read-only" in msg and str(ro) in msg, msg


def test_output_dir_under_a_file(work, tmp_path, capsys):
    """Without root (where chmod does not stop root either): a dir under a plain file."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a dir")
    for args in read_only_targets(work, blocker):
        msg = fails(capsys, *args)
        assert "under a file" in msg or "is a file" in msg, msg
        assert str(blocker) in msg
    assert blocker.read_text() == "a file, not a dir"


def test_resuming_into_an_exp_dir_of_another_model(work, tmp_path, capsys):
    conf = tmp_path / "train.yaml"
    conf.write_text(CONF)
    exp = tmp_path / "exp"
    rc, err = cli(capsys, *train_args(work, conf, exp))
    assert rc == 0, err[-2000:]
    before = snapshot(exp)
    conf.write_text(CONF.replace("hidden_dim: 16", "hidden_dim: 24").replace("num_epochs: 1", "num_epochs: 2"))
    msg = fails(capsys, *train_args(work, conf, exp))
    assert "epoch-1.pt holds another model than this run builds (size mismatch" in msg and "new --exp-dir" in msg
    after = snapshot(exp)
    assert {k: v for k, v in after.items() if k.endswith(".pt")} == {
        k: v for k, v in before.items() if k.endswith(".pt")
    }


def test_transcribe_names_each_bad_file_and_prints_the_good_ones(work, tmp_path, capsys):
    good = sorted((work / "corpus").glob("*.wav"))[0]
    bad = {"nan.wav": float_wave(math.nan), "cut.wav": lambda p: truncated(p, 3000)}
    for name, write in bad.items():
        write(tmp_path / name)
    (tmp_path / "clip.wav").write_bytes(mp4_bytes(tmp_path))
    files = [good, *(tmp_path / n for n in [*bad, "clip.wav"])]
    capsys.readouterr()
    rc = main(["transcribe", "--model-dir", str(work / "model.pt"), "--lang-dir", str(work / "lang"), *map(str, files)])
    out, err = capsys.readouterr()
    assert rc == 1 and "Traceback" not in err
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(good)], "the good file still prints"
    for name, words in (("nan.wav", "NaN or Inf"), ("cut.wav", "truncated"), ("clip.wav", "mp4/m4a")):
        line = next(x for x in err.splitlines() if name in x)
        assert words in line, line
    assert "3 of 4 file(s) could not be read" in err


def test_transcribe_takes_folders_and_names_a_missing_file(work, tmp_path, capsys):
    """`speechtl transcribe DIR` stopped with IsADirectoryError's traceback; a missing file's fix
    spoke of deleting a transcript line."""
    goods = sorted((work / "corpus").glob("*.wav"))[:2]
    folder = tmp_path / "dir with space"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(goods[0], folder / "a.wav")
    shutil.copy(goods[1], folder / "sub" / "b.WAV")
    (folder / "notes.txt").write_text("not audio")
    capsys.readouterr()
    model = ["--model-dir", str(work / "model.pt"), "--lang-dir", str(work / "lang")]
    rc = main(["transcribe", *model, str(folder), str(tmp_path / "gone.wav")])
    out, err = capsys.readouterr()
    assert rc == 1 and "Traceback" not in err
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(folder / "a.wav"), str(folder / "sub" / "b.WAV")]
    assert "gone.wav does not exist. Fix: check the path" in err and "transcript line" not in err
    assert "1 of 3 file(s) could not be read" in err
    (tmp_path / "empty").mkdir()
    assert main(["transcribe", *model, str(tmp_path / "empty")]) == 1
    assert "is a folder with no audio files" in capsys.readouterr().err


def test_nan_audio_is_named_at_import_and_at_the_fbank_stage(work, tmp_path, capsys):
    """A float wav with NaN samples is named by ``speechtl prepare folder``; one that turns NaN
    after the import (manifests already written) is stopped by the fbank stage, before any of
    its features are written."""
    corpus = tmp_path / "recordings"
    shutil.copytree(work / "corpus", corpus / "spk")
    bad = sorted((corpus / "spk").glob("*.wav"))[0]
    good_copy = tmp_path / "good.wav"
    shutil.copy(bad, good_copy)
    set_nan(bad)
    (corpus / "transcripts.txt").write_text("".join(f"{p.stem}|yes no\n" for p in sorted(corpus.rglob("*.wav"))))
    out = tmp_path / "m"
    import_args = ["--sampling-rate", "8000", "--dev-fraction", "0", "--test-fraction", "0"]
    msg = fails(capsys, "prepare", "folder", "--corpus-dir", corpus, "--output-dir", out, *import_args)
    assert bad.name in msg and "NaN or Inf" in msg and "non-finite" in msg and "Fix" in msg, msg
    shutil.copy(good_copy, bad)
    rc, err = cli(capsys, "prepare", "folder", "--corpus-dir", corpus, "--output-dir", out, *import_args)
    assert rc == 0, err[-2000:]
    set_nan(bad)  # goes bad after the import
    fbank_args = ["--prefix", "folder", "--splits", "train", "--sampling-rate", "8000", "--num-mel-bins", "23"]
    msg = fails(capsys, "compute-fbank", "--manifest-dir", out, "--output-dir", tmp_path / "fbank", *fbank_args)
    assert str(bad) in msg and "NaN or Inf" in msg and "Fix:" in msg, msg
    assert not (tmp_path / "fbank" / "folder_cuts_train.jsonl.gz").exists() and not partials(tmp_path / "fbank")
