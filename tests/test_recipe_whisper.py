"""yesno's run.sh --pretrained whisper:DIR: systems from a pretrained model next to the own ones.

A tiny random Whisper (a Hugging Face directory with a toy tokenizer, made offline) stands in
for whisper-tiny.en; the recipe trains so few updates that only the plumbing is checked:
rows whisper-<method> and whisper-zero-shot beside the own scratch rows, which stay as they
were, per seed with --seeds, and a re-run that does nothing.
"""

import csv
import json

import pytest
import torch
import yaml
from conftest import REPO, copy_recipe, run
from test_whisper import tiny_whisper_config

RECIPE = REPO / "egs" / "yesno" / "ASR"
DECODINGS = {"greedy", "hlg"}


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    """A random tiny WhisperForConditionalGeneration and a 56-token byte-level tokenizer."""
    from transformers import WhisperForConditionalGeneration, WhisperTokenizer

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny-whisper")
    WhisperForConditionalGeneration(tiny_whisper_config(max_target_positions=128)).save_pretrained(d)
    eot, sot = "<|endoftext|>", "<|startoftranscript|>"
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ"] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    # ids 0-2 are the config's pad, bos (decoder start) and eos
    (d / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(["!", sot, eot, *letters])}))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = WhisperTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), pad_token="!", bos_token=sot, eos_token=eot)
    tok.save_pretrained(d)
    return d


def results(recipe):
    with open(recipe / "exp" / "results.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def shrink(path, **train):
    """A copied conf with fewer epochs or updates: the test checks the plumbing, not the WER."""
    conf = yaml.safe_load(path.read_text())
    conf["train"].update(train)
    if "methods" in conf:
        conf["methods"]["freeze"]["options"]["bottom_layers"] = 1  # the tiny encoder has 2 layers
    path.write_text(yaml.safe_dump(conf))


@pytest.fixture(scope="module")
def recipe_runs(yesno_dir, tiny_whisper, tmp_path_factory):
    recipe = copy_recipe(RECIPE, tmp_path_factory.mktemp("yesno-whisper"))
    shrink(recipe / "conf" / "train.yaml", num_epochs=2, average_last=1)
    shrink(recipe / "conf" / "adapt_whisper.yaml", num_steps=4, warmup_steps=1, average_last=1)
    own = run(recipe, "--corpus-dir", str(yesno_dir), "--stop-stage", "5", "--decoding", "greedy,hlg")
    assert own.returncode == 0, own.stdout[-3000:] + own.stderr[-3000:]
    own_rows = results(recipe)
    own_model = recipe / "exp" / "scratch_all" / "final.pt"
    mtime = own_model.stat().st_mtime_ns
    args = ["--corpus-dir", str(yesno_dir), "--stage", "4", "--stop-stage", "5", "--decoding", "greedy,hlg"]
    args += ["--pretrained", f"whisper:{tiny_whisper}"]
    pt = run(recipe, *args)
    assert pt.returncode == 0, pt.stdout[-3000:] + pt.stderr[-3000:]
    assert own_model.stat().st_mtime_ns == mtime  # the own system is not retrained
    return recipe, own_rows, pt, args


def test_pretrained_rows_next_to_unchanged_own_rows(recipe_runs, tiny_whisper):
    recipe, own_rows, pt, _ = recipe_runs
    rows = results(recipe)
    assert {(r["method"], r["data"]) for r in own_rows} == {("scratch", "all")}
    assert [r for r in rows if r["method"] == "scratch"] == own_rows  # the own rows, byte for byte
    got = {(r["method"], r["data"], r["decoding"]) for r in rows if r["method"] != "scratch"}
    want = {(f"whisper-{m}", "all", d) for m in ("finetune", "freeze") for d in DECODINGS}
    assert got == want | {("whisper-zero-shot", "none", "whisper")}
    for r in rows:
        assert r["test_set"] == "test" and r["words"] == "240", r
        assert abs(float(r["wer"]) - 100 * int(r["errors"]) / 240) < 0.01
        assert (recipe / "exp" / r["utt_errs"]).is_file()
    for m in ("finetune", "freeze"):
        exp = recipe / "exp" / "whisper" / f"{m}_all"
        assert (exp / "decode" / "recogs-test-hlg.txt").is_file()
        assert f"source=whisper:{tiny_whisper}" in (exp / ".done").read_text()
    assert (recipe / "exp" / "whisper" / "zero_shot" / "decode" / "recogs-test-whisper.txt").is_file()
    assert "Stage 4: finetune from whisper:" in pt.stdout and "Stage 4: train (" not in pt.stdout
    md = (recipe / "exp" / "RESULTS.md").read_text()
    assert "| whisper-freeze | all |" in md and "| whisper-zero-shot | none |" in md and "| scratch | all |" in md


def test_the_model_reads_whisper_log_mel_of_the_8khz_audio_at_16khz(recipe_runs):
    """yesno is 8 kHz; the Whisper systems' input is log-mel from the audio resampled to 16 kHz."""
    from lhotse import CutSet

    from speechtl.features.inputs import WaveInput
    from speechtl.train.checkpoint import model_from_checkpoint

    recipe = recipe_runs[0]
    spec = model_from_checkpoint(recipe / "exp" / "whisper" / "freeze_all" / "final.pt").input_spec
    assert (spec.kind, spec.sampling_rate, spec.num_features) == ("whisper-mel", 16000, 80)
    cut = next(iter(CutSet.from_file(recipe / "data" / "fbank" / "yesno_cuts_test.jsonl.gz")))
    assert cut.sampling_rate == 8000
    feats, lens = WaveInput(spec)(CutSet([cut]))
    assert feats.shape[2] == 80 and lens.tolist() == [int(cut.duration * 100)]  # 100 frames/s at 16 kHz


def test_seeds_give_one_pretrained_system_each(recipe_runs):
    recipe = recipe_runs[0]
    r = run(recipe, *recipe_runs[3], "--seeds", "7 8", "--pretrained-methods", "freeze")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    seeds = {r["seed"] for r in results(recipe) if r["method"] == "whisper-freeze" and r["decoding"] == "hlg"}
    assert {"7", "8"} <= seeds
    for s in (7, 8):
        assert (recipe / "exp" / "whisper" / f"freeze_all_s{s}" / "final.pt").is_file()


def test_rerun_with_pretrained_does_nothing(recipe_runs):
    recipe, _, _, args = recipe_runs
    before = (recipe / "exp" / "results.tsv").read_text()
    r = run(recipe, *args)
    assert r.returncode == 0, r.stderr
    assert "Stage 4" not in r.stdout and "decode test" not in r.stdout and "zero-shot:" not in r.stdout, r.stdout
    assert (recipe / "exp" / "results.tsv").read_text() == before


def test_tune_chooses_on_folds_of_train_never_on_test(recipe_runs):
    """--tune (last here: it retrains finetune): yesno has no dev set, so a pretrained method's options
    are chosen by 3-fold cross-validation on the train utterances. The folds cover train and never
    test, the sweep decodes only their dev parts, the system then trains with the chosen point, and
    a re-run sweeps nothing again."""
    from lhotse import CutSet

    from speechtl.data.subset import original_id
    from speechtl.train.checkpoint import load_checkpoint

    recipe, _, _, args = recipe_runs
    (recipe / "conf" / "sweep_whisper.yaml").write_text("finetune: {train.lr: [0.0005, 0.003]}\n")
    tune = [*args, "--pretrained-methods", "finetune", "--tune", "finetune"]
    r = run(recipe, *tune)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    fbank = recipe / "data" / "fbank"
    train = {c.id for c in CutSet.from_file(fbank / "yesno_cuts_train.jsonl.gz") if original_id(c.id) == c.id}
    test = {c.id for c in CutSet.from_file(fbank / "yesno_cuts_test.jsonl.gz")}
    dev = [{c.id for c in CutSet.from_file(recipe / "data" / "folds" / f"dev_f{k}.jsonl.gz")} for k in range(3)]
    assert set().union(*dev) == train and sum(map(len, dev)) == len(train) and not train & test
    sweep = recipe / "exp" / "whisper" / "sweep" / "finetune"
    decoded = sorted(p.name for p in sweep.rglob("wer-summary-*"))
    assert len(decoded) == 2 * 3 and all(n.startswith("wer-summary-dev") for n in decoded), decoded
    tuned = recipe / "exp" / "whisper" / "adapt_tuned.yaml"
    assert any(line.startswith("# sweep: finetune:") for line in tuned.read_text().splitlines())
    chosen = yaml.safe_load(tuned.read_text())["methods"]["finetune"]["train"]["lr"]
    ckpt = load_checkpoint(recipe / "exp" / "whisper" / "finetune_all" / "final.pt")
    assert chosen in (0.0005, 0.003) and ckpt["train_config"]["lr"] == chosen
    again = run(recipe, *tune)
    assert again.returncode == 0 and "tune finetune" not in again.stdout and "Stage 4: finetune" not in again.stdout
