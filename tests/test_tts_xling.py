"""tts_xling corpus preparation: splits, held-out sentences and voices, LAD text, nested subsets."""

import shutil
from pathlib import Path

import pytest
import yaml
from lhotse import CutSet, MonoCut, SupervisionSegment

from speechtl.data.corpora.lad import parse_recording_script
from speechtl.data.corpora.tts_xling import SPLITS, load_config, plan_corpus, prepare_tts_xling
from speechtl.data.subset import subset_by_minutes
from speechtl.errors import SpeechtlError

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "source_langs": ["en", "ru"],
    "target_lang": "ga",
    "source_train_sentences": 3,
    "source_dev_sentences": 1,
    "target_dev_sentences": 2,
    "target_test_sentences": 2,
    "target_train_sentences": 4,
    "seed": 3,
    "target_unlabelled_sentences": 3,
    "voices": {
        "source": [{"engine": "espeak-ng", "name": "{lang}+m1", "rate": [0.9, 1.0], "pitch": [1, 1]}],
        "target_train": [{"engine": "espeak-ng", "name": "{lang}+m3", "rate": [1.1, 1.2], "pitch": [1, 1]}],
        "target_heldout": [{"engine": "espeak-ng", "name": "{lang}+f5", "rate": [1.1, 1.2], "pitch": [1, 1]}],
    },
}


@pytest.fixture
def text_dir(tmp_path):
    d = tmp_path / "text"
    d.mkdir()
    (d / "en.tsv").write_text(
        "".join(
            f"e{i}\tThe cat number {w} sat.\n" for i, w in enumerate(["one", "two", "three", "four", "five", "six"])
        )
        + "e9\tIt cost 5 pounds.\n",
        encoding="utf-8",
    )
    (d / "ru.tsv").write_text(
        "".join(f"r{i}\tкот {w} сидел\n" for i, w in enumerate(["раз", "два", "три", "четыре"])), encoding="utf-8"
    )
    (d / "ga.tsv").write_text(
        "".join(
            f"g{i}\tTá an cat {w} anseo.\n"
            for i, w in enumerate(["aon", "dó", "trí", "ceathair", "cúig", "sé", "seacht", "ocht", "naoi", "deich"])
        ),
        encoding="utf-8",
    )
    return d


def write_config(tmp_path, **changes):
    path = tmp_path / "corpus.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}), encoding="utf-8")
    return path


def test_splits_hold_out_sentences_and_voices(text_dir, tmp_path):
    jobs = plan_corpus(text_dir, load_config(write_config(tmp_path)))
    assert [len(jobs[s]) for s in SPLITS] == [6, 2, 4, 2, 2, 3]
    texts = {s: {j["text"] for j in jobs[s]} for s in SPLITS}
    assert not texts["target_train"] & (texts["target_test"] | texts["target_dev"])
    assert not texts["target_test"] & texts["target_dev"]
    assert not any("5" in t for s in SPLITS for t in texts[s]), "sentences with digits are left out"
    assert {j["voice"].name for j in jobs["target_train"]} == {"ga+m3"}
    assert {j["voice"].name for j in jobs["target_test"] + jobs["target_dev"] + jobs["target_unlabelled"]} == {"ga+f5"}
    assert texts["target_unlabelled"] <= texts["target_train"], "unlabelled audio never speaks a test sentence"
    assert {j["voice"].name for j in jobs["source_train"]} == {"en+m1", "ru+m1"}
    assert all(1.1 <= j["rate"] <= 1.2 for j in jobs["target_test"])
    assert {j["language"] for j in jobs["source_train"]} == {"en", "ru"}


def test_prepare_writes_manifests_and_is_deterministic(text_dir, tmp_path):
    cfg = write_config(tmp_path)
    out = prepare_tts_xling(text_dir, tmp_path / "m", cfg, nj=2)
    for split in SPLITS:
        assert (tmp_path / "m" / f"tts_xling_recordings_{split}.jsonl.gz").is_file()
    sups = list(out["target_test"]["supervisions"])
    assert sups[0].language == "ga" and sups[0].text == sups[0].text.lower() and "." not in sups[0].text
    assert (tmp_path / "m" / "target_train_text.txt").read_text(encoding="utf-8").count("\n") == 4
    first = {r.id: Path(r.sources[0].source).read_bytes() for r in out["target_test"]["recordings"]}
    shutil.rmtree(tmp_path / "m")
    again = prepare_tts_xling(text_dir, tmp_path / "m", cfg, nj=1)
    assert {r.id: Path(r.sources[0].source).read_bytes() for r in again["target_test"]["recordings"]} == first


def test_missing_text_and_too_few_sentences(text_dir, tmp_path):
    (text_dir / "ru.tsv").unlink()
    with pytest.raises(SpeechtlError, match=r"lacks ru.tsv"):
        prepare_tts_xling(text_dir, tmp_path / "m", write_config(tmp_path))
    with pytest.raises(SpeechtlError, match=r"not more than"):
        plan_corpus(text_dir, load_config(write_config(tmp_path, source_langs=["en"], target_test_sentences=9)))


def test_recipe_config_keeps_target_voices_apart():
    cfg = load_config(REPO / "egs" / "tts_xling" / "ASR" / "conf" / "corpus.yaml")
    variant = {role: {v["name"].split("+")[-1] for v in cfg.voices[role] if "+" in v["name"]} for role in cfg.voices}
    assert not variant["source"] & (variant["target_train"] | variant["target_heldout"])
    assert not variant["target_train"] & variant["target_heldout"]
    src_rates = [v["rate"] for v in cfg.voices["source"]]
    tgt_rates = [v["rate"] for v in cfg.voices["target_train"] + cfg.voices["target_heldout"]]
    assert max(r[1] for r in src_rates) < min(r[0] for r in tgt_rates), "target rates are never used in the source"


def test_parse_lad_recording_script():
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<recording_script>\n'
        '  <fileid id="z0001_000">Tá  sé\n go maith.</fileid>\n  <fileid id="z0001_001"></fileid>\n</recording_script>'
    )
    assert parse_recording_script(xml) == [("z0001_000", "Tá sé go maith.")]
    with pytest.raises(SpeechtlError, match=r"not valid XML"):
        parse_recording_script("<recording_script>", "x.xml")


def _cut(cid, dur):
    return MonoCut(cid, 0.0, dur, 0, supervisions=[SupervisionSegment(cid, cid, 0.0, dur, text="a")])


def test_subsets_are_nested_and_keep_perturbed_copies():
    cuts = CutSet.from_cuts([_cut(f"u{i}", 30.0) for i in range(20)] + [_cut(f"u{i}_sp0.9", 33.3) for i in range(20)])
    small, big = subset_by_minutes(cuts, 2, seed=1), subset_by_minutes(cuts, 5, seed=1)
    originals = lambda cs: {c.id for c in cs if "_sp" not in c.id}  # noqa: E731
    assert len(originals(small)) == 4 and len(originals(big)) == 10
    assert originals(small) < originals(big)
    assert {c.id for c in small} == originals(small) | {f"{i}_sp0.9" for i in originals(small)}
    with pytest.raises(SpeechtlError, match=r"pool has 10.0 min"):
        subset_by_minutes(cuts, 11)


def test_a_subset_much_larger_than_its_amount_is_said(caplog):
    """Long recordings let into a generated recipe: its '1min' subset held 2.22 min (a 73.6-s cut
    first in the seeded order) and its systems and rows said 1min, with no word."""
    import logging

    caplog.set_level(logging.WARNING)
    cuts = CutSet.from_cuts([_cut("long", 134.0)] + [_cut(f"u{i}", 3.0) for i in range(40)])
    seed = next(s for s in range(50) if "long" in {c.id for c in subset_by_minutes(cuts, 1, seed=s)})
    caplog.clear()
    subset_by_minutes(cuts, 1, seed=seed)
    assert "the 1-min subset holds" in caplog.text and "long: 134.0 s" in caplog.text
    caplog.clear()
    subset_by_minutes(CutSet.from_cuts([_cut(f"u{i}", 3.0) for i in range(40)]), 1, seed=0)
    assert "subset holds" not in caplog.text
