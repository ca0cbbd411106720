"""FSDD preparation, few-shot subsets, the synthetic digit source, classification scoring and heads."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from lhotse import CutSet

from speechtl.data.corpora.fsdd import DIGIT_WORDS, parse_name, prepare_fsdd
from speechtl.data.corpora.tts_digits import TtsDigitsConfig, plan_digits, prepare_tts_digits
from speechtl.data.subset import split_rest, subset_by_shots
from speechtl.errors import SpeechtlError
from speechtl.score.classify import score

SPEAKERS = ["george", "jackson", "lucas", "nicolas"]


def _ids(manifests, split):
    return {r.id for r in manifests[split]["recordings"]}


def test_official_split_tests_indices_0_to_4_of_every_speaker(fsdd_dir, tmp_path):
    m = prepare_fsdd(fsdd_dir, tmp_path)
    train, test = _ids(m, "train"), _ids(m, "test")
    assert not train & test
    assert {parse_name(i)[2] for i in test} == set(range(5))
    assert min(parse_name(i)[2] for i in train) == 5
    assert len(test) == 4 * 10 * 5 and len(train) == 4 * 10 * 45
    sups = list(m["test"]["supervisions"])
    assert {s.speaker for s in sups} == set(SPEAKERS)
    assert all(s.text == DIGIT_WORDS[parse_name(s.id)[0]] for s in sups)
    assert (tmp_path / "fsdd_supervisions_train.jsonl.gz").is_file()


def test_disjoint_speakers_train_only_the_first_and_test_only_the_second(fsdd_dir, tmp_path):
    m = prepare_fsdd(fsdd_dir, tmp_path, train_speakers=["george", "jackson"], test_speakers=["lucas"])
    train_spk = {s.speaker for s in m["train"]["supervisions"]}
    test_spk = {s.speaker for s in m["test"]["supervisions"]}
    assert train_spk == {"george", "jackson"} and test_spk == {"lucas"}
    # Speakers on one side only keep every recording (indices 0-49).
    assert len(m["train"]["recordings"]) == 2 * 500 and len(m["test"]["recordings"]) == 500


def test_bad_speaker_and_bad_file_names_are_named(fsdd_dir, tmp_path):
    with pytest.raises(SpeechtlError, match=r"alice"):
        prepare_fsdd(fsdd_dir, train_speakers=["alice"])
    d = tmp_path / "rec"
    d.mkdir()
    for name in ("0_george_0.wav", "1_george_7.wav"):
        shutil.copy(fsdd_dir / name, d / name)
    (d / "notes.wav").write_bytes(b"")
    with pytest.raises(SpeechtlError, match=r"notes.wav"):
        prepare_fsdd(d)


def test_a_corrupt_wav_is_named_and_nothing_is_written(fsdd_dir, tmp_path):
    d = tmp_path / "rec"
    d.mkdir()
    for name in ("0_george_0.wav", "1_george_7.wav", "2_lucas_3.wav"):
        shutil.copy(fsdd_dir / name, d / name)
    (d / "3_lucas_9.wav").write_bytes(b"RIFF not really")
    out = tmp_path / "out"
    with pytest.raises(SpeechtlError, match=r"3_lucas_9.wav"):
        prepare_fsdd(d, out)
    assert not out.exists() or not list(out.glob("*.jsonl.gz"))


def _toy_cuts(per_class=6):
    from lhotse import MonoCut, SupervisionSegment

    cuts = []
    for spk in ("a", "b"):
        for word in ("ONE", "TWO"):
            for i in range(per_class):
                cid = f"{word}_{spk}_{i}"
                cuts.append(
                    MonoCut(cid, 0, 1.0, 0, supervisions=[SupervisionSegment(cid, cid, 0, 1.0, text=word, speaker=spk)])
                )
                cuts.append(
                    MonoCut(
                        cid + "_sp0.9",
                        0,
                        1.1,
                        0,
                        supervisions=[SupervisionSegment(cid + "_sp0.9", cid, 0, 1.1, text=word, speaker=spk)],
                    )
                )
    return CutSet.from_cuts(cuts)


def test_shots_are_per_speaker_and_transcript_and_nested():
    cuts = _toy_cuts()
    one, three = subset_by_shots(cuts, 1, seed=3), subset_by_shots(cuts, 3, seed=3)
    originals = lambda cs: {c.id for c in cs if not c.id.endswith("_sp0.9")}  # noqa: E731
    assert len(originals(one)) == 4 and len(originals(three)) == 12
    assert originals(one) <= originals(three)
    per_class = {}
    for c in originals(three):
        word, spk, _ = c.split("_")
        per_class[(word, spk)] = per_class.get((word, spk), 0) + 1
    assert set(per_class.values()) == {3}
    assert {c.id for c in three} == originals(three) | {i + "_sp0.9" for i in originals(three)}
    with pytest.raises(SpeechtlError, match=r"fewer than 7"):
        subset_by_shots(cuts, 7)


def test_rest_of_the_shots_is_a_dev_tail_and_untranscribed_audio_disjoint_from_every_shot_subset():
    cuts = _toy_cuts(per_class=8)
    dev, unlabelled = split_rest(cuts, labelled_shots=3, dev_shots=2, seed=3)
    shots = {c.id for n in (1, 2, 3) for c in subset_by_shots(cuts, n, seed=3)}
    dev_ids, unl_ids = {c.id for c in dev}, {c.id for c in unlabelled}
    assert len(dev_ids) == 4 * 2 and len(unl_ids) == 4 * 3  # per class: 8 = 3 labelled + 3 untranscribed + 2 dev
    assert not dev_ids & shots and not unl_ids & shots and not dev_ids & unl_ids
    assert not any(i.endswith("_sp0.9") for i in dev_ids | unl_ids)
    assert {c.id for c in cuts if not c.id.endswith("_sp0.9")} == dev_ids | unl_ids | {
        i for i in shots if not i.endswith("_sp0.9")
    }
    assert all(c.supervisions[0].text == "" for c in unlabelled)
    assert all(c.supervisions[0].text in ("ONE", "TWO") for c in dev)
    # The dev tail does not move with the number of labelled shots: options tuned once serve every amount.
    assert {c.id for c in split_rest(cuts, labelled_shots=1, dev_shots=2, seed=3)[0]} == dev_ids
    with pytest.raises(SpeechtlError, match=r"fewer than 5 labelled \+ 4 dev"):
        split_rest(cuts, labelled_shots=5, dev_shots=4, strict=True)
    # Not strict (a recipe on a small corpus): dev is what the shots leave, nothing untranscribed.
    small_dev, none = split_rest(cuts, labelled_shots=5, dev_shots=4)
    assert len(small_dev) == 4 * 3 and len(none) == 0
    assert not {c.id for c in small_dev} & {c.id for c in subset_by_shots(cuts, 5, seed=0)}


def test_digit_source_plan_is_deterministic_and_within_its_ranges():
    cfg = TtsDigitsConfig(
        train_utterances=300,
        dev_utterances=10,
        min_digits=2,
        max_digits=4,
        espeak_accents=["en-us"],
        espeak_variants=["", "m3"],
        flite_voices=["kal"],
        festival_voices=["kal_diphone"],
        weights={"espeak-ng": 0.5, "flite": 0.5, "festival": 0.0},
    )
    a, b = plan_digits(cfg), plan_digits(cfg)
    assert [j["id"] for j in a["source_train"]] == [j["id"] for j in b["source_train"]]
    jobs = a["source_train"]
    assert all(2 <= len(j["text"].split()) <= 4 and set(j["text"].split()) <= set(DIGIT_WORDS) for j in jobs)
    engines = [j["voice"].engine for j in jobs]
    assert "festival" not in engines  # weight 0
    assert 0.35 < engines.count("flite") / len(engines) < 0.65
    assert all(cfg.rate[0] <= j["rate"] <= cfg.rate[1] and cfg.pitch[0] <= j["pitch"] <= cfg.pitch[1] for j in jobs)


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="needs espeak-ng")
def test_digit_source_writes_each_splits_audio_manifests_and_text_in_the_lexicons_words(tmp_path):
    cfg = tmp_path / "source.yaml"
    cfg.write_text(
        "train_utterances: 3\ndev_utterances: 2\nmax_digits: 2\nflite_voices: []\nfestival_voices: []\n"
        "espeak_variants: ['']\nespeak_accents: [en-us]\n"
    )
    out = prepare_tts_digits(output_dir=tmp_path / "m", config=cfg, nj=2)
    for split, n in (("source_train", 3), ("source_dev", 2)):
        sups = list(out[split]["supervisions"])
        recs = {r.id: r for r in out[split]["recordings"]}
        assert len(sups) == n and set(recs) == {s.recording_id for s in sups}
        assert all(set(s.text.split()) <= set(DIGIT_WORDS) for s in sups)  # upper case, as the lexicon
        assert all(
            recs[s.recording_id].duration > 0.2 and Path(recs[s.recording_id].sources[0].source).is_file() for s in sups
        )
        written = (tmp_path / "m" / f"{split}_text.txt").read_text().splitlines()
        assert written == [s.text for s in sups]
        assert (tmp_path / "m" / f"tts_digits_supervisions_{split}.jsonl.gz").is_file()


def test_classification_scores_match_hand_computation():
    pairs = [("a", "a"), ("a", "a"), ("a", "b"), ("b", "b"), ("c", "b"), ("c", "c")]
    s = score(pairs)
    assert s.accuracy == pytest.approx(100 * 4 / 6)
    # a: P 2/2 R 2/3; b: P 1/3 R 1/1; c: P 1/1 R 1/2
    p = [1.0, 1 / 3, 1.0]
    r = [2 / 3, 1.0, 0.5]
    f = [2 * x * y / (x + y) for x, y in zip(p, r, strict=False)]
    assert s.precision == pytest.approx(100 * np.mean(p))
    assert s.recall == pytest.approx(100 * np.mean(r))
    assert s.f1 == pytest.approx(100 * np.mean(f))
    assert s.confusion.tolist() == [[2, 1, 0], [0, 1, 0], [0, 1, 1]]


@pytest.fixture(scope="module")
def fsdd_feats(fsdd_dir, tmp_path_factory):
    """Fbank cuts of 2 speakers x 10 digits x 4 recordings (train) and x 2 (test)."""
    from speechtl.features import FbankConfig
    from speechtl.features.compute import compute_fbank

    d = tmp_path_factory.mktemp("fsdd")
    src = d / "rec"
    src.mkdir()
    for spk in ("george", "lucas"):
        for digit in range(10):
            for i in range(6):
                shutil.copy(fsdd_dir / f"{digit}_{spk}_{i}.wav", src / f"{digit}_{spk}_{i}.wav")
    prepare_fsdd(src, d / "manifests", test_indices=range(2))
    compute_fbank(
        d / "manifests", d / "fbank", "fsdd", ["train", "test"], FbankConfig(sampling_rate=8000, num_mel_bins=40)
    )
    return (
        CutSet.from_file(d / "fbank" / "fsdd_cuts_train.jsonl.gz"),
        CutSet.from_file(d / "fbank" / "fsdd_cuts_test.jsonl.gz"),
        d,
    )


def _small_model_cfg():
    from speechtl.models import ModelConfig

    return ModelConfig(
        encoder="conformer",
        num_features=40,
        encoder_options=dict(
            d_model=32, num_heads=2, ffn_dim=64, num_layers=2, kernel_size=7, dropout=0.0, subsampling_channels=8
        ),
    )


def test_speaker_classifier_learns_through_the_one_trainer(fsdd_feats, tmp_path):
    from speechtl.adapt import get_method
    from speechtl.adapt.transfer import build_model_for
    from speechtl.score.classify import evaluate_classifier
    from speechtl.train import TrainConfig, Trainer
    from speechtl.train.objectives import ClassifyObjective

    train, test, d = fsdd_feats
    objective = ClassifyObjective.from_cuts("classify-speaker", train)
    assert objective.classes == ["george", "lucas"]
    torch.manual_seed(0)
    model = build_model_for(get_method("scratch"), objective, _small_model_cfg(), head="stats")
    cfg = TrainConfig(
        num_steps=40, lr=0.003, optimizer="adamw", max_duration=15, num_buckets=2, average_last=1, log_interval=100
    )
    final = Trainer(model, None, get_method("scratch"), cfg, tmp_path / "exp", objective).fit(train)
    tsv = tmp_path / "classify.tsv"
    s = evaluate_classifier(
        final, d / "fbank" / "fsdd_cuts_test.jsonl.gz", "test", tmp_path / "out", "scratch", "4shots", tsv
    )
    assert s.accuracy >= 90.0  # two speakers, chance is 50%
    lines = tsv.read_text().splitlines()
    assert lines[0].split("\t") == ["task", "method", "data", "accuracy", "precision", "recall", "f1"]
    assert lines[1].split("\t")[:3] == ["classify-speaker", "scratch", "4shots"]
    assert (tmp_path / "out" / "confusion-test.png").read_bytes()[:4] == b"\x89PNG"
    preds = (tmp_path / "out" / "predictions-test.txt").read_text().splitlines()
    assert len(preds) == len(test)


def test_linear_probe_head_on_a_ctc_source_keeps_the_encoder_and_maps_digit_rows(fsdd_feats, tmp_path):
    from speechtl.adapt import get_method
    from speechtl.adapt.transfer import build_model_for
    from speechtl.models import build_model
    from speechtl.train import TrainConfig, Trainer
    from speechtl.train.checkpoint import load_checkpoint, save_checkpoint
    from speechtl.train.objectives import ClassifyObjective

    train, _, _ = fsdd_feats
    # A CTC "source" with one unit per digit word (blank first), as the FSDD recipe's.
    tokens = {"<blk>": 0, **{w: i + 1 for i, w in enumerate(DIGIT_WORDS)}}
    torch.manual_seed(1)
    source = build_model(_small_model_cfg(), len(tokens))
    src_path = tmp_path / "source.pt"
    save_checkpoint(src_path, source, tokens=tokens)
    objective = ClassifyObjective.from_cuts("classify-digit", train)
    finetune = build_model_for(get_method("finetune"), objective, None, src_path, head="mean")
    w = finetune.state_dict()["output.weight"]
    for c, i in objective.token2id.items():
        assert torch.equal(w[i], source.state_dict()["output.weight"][tokens[c]])  # rows by symbol
    probe = build_model_for(get_method("linear-probe"), objective, None, src_path, head="attention")
    before = {k: v.clone() for k, v in probe.state_dict().items()}
    cfg = TrainConfig(num_steps=5, lr=0.01, max_duration=15, num_buckets=2, average_last=1, log_interval=100)
    final = Trainer(probe, None, get_method("linear-probe"), cfg, tmp_path / "exp", objective).fit(train)
    after = load_checkpoint(final)
    assert after["classes"] == sorted(DIGIT_WORDS) and after["task"] == "classify-digit"
    for k, v in after["model"].items():
        if k.startswith("encoder."):
            assert torch.equal(v, before[k]), k
    assert not torch.equal(after["model"]["output.pool.score.weight"], before["output.pool.score.weight"])
    assert not torch.equal(after["model"]["output.weight"], before["output.weight"])


def test_ctc_only_methods_refuse_a_classifier(fsdd_feats, tmp_path):
    from speechtl.adapt import get_method
    from speechtl.adapt.transfer import build_model_for
    from speechtl.train import TrainConfig, Trainer
    from speechtl.train.objectives import ClassifyObjective

    objective = ClassifyObjective.from_cuts("classify-digit", fsdd_feats[0])
    model = build_model_for(get_method("scratch"), objective, _small_model_cfg(), head="mean")
    with pytest.raises(SpeechtlError, match=r"kd works on CTC posteriors"):
        Trainer(model, None, get_method("kd"), TrainConfig(), tmp_path, objective)
