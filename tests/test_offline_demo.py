"""The default recipe needs no network: its sentences ship with speechtl (issue: offline `make demo`)."""

import gzip
import os
import shutil
import subprocess
import urllib.request

import pytest
from conftest import REPO, copy_recipe, shared_data, venv_env

from speechtl.data.corpora.lad import SHIPPED_DIR, shipped_lad_text
from speechtl.data.corpora.tts_xling import download_tts_xling, load_config, plan_corpus
from speechtl.errors import SpeechtlError

LANGS = ("en", "ga", "nl", "ro", "ru")


def _no_network(*args, **kwargs):
    raise OSError("network is unreachable (blocked by the test)")


def test_shipped_text_has_licence_and_every_language_the_recipe_uses():
    assert (SHIPPED_DIR / "LICENSE").read_text().count("Apache License, Version 2.0") == 1
    assert "Living Audio Dataset" in (SHIPPED_DIR / "README.md").read_text()
    cfg = load_config(REPO / "egs/tts_xling/ASR/conf/corpus.yaml")
    for lang in [*cfg.source_langs, cfg.target_lang]:
        lines = gzip.decompress((SHIPPED_DIR / f"{lang}.tsv.gz").read_bytes()).decode("utf-8").splitlines()
        assert len(lines) >= 700 and all(line.count("\t") == 1 for line in lines), lang


def test_default_download_is_offline_and_equals_the_shared_text(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    out = download_tts_xling(tmp_path)
    assert sorted(p.name for p in out.glob("*.tsv")) == [f"{lang}.tsv" for lang in LANGS]
    text = shared_data() / "text"
    if text.is_dir():
        for lang in LANGS:
            assert (out / f"{lang}.tsv").read_bytes() == (text / f"{lang}.tsv").read_bytes(), lang
    # The shipped text plans the same corpus as the same text given with --text-dir.
    cfg = load_config(REPO / "egs/tts_xling/ASR/conf/corpus.yaml")
    if text.is_dir():
        assert plan_corpus(out, cfg) == plan_corpus(text, cfg)
    # --from-web still downloads (and says how to do without it when it cannot).
    with pytest.raises(SpeechtlError, match="--text-dir"):
        download_tts_xling(tmp_path / "web", from_web=True)
    # ... afresh, over the shipped copy a first run left (it kept it and exited 0), and a failed
    # download keeps the old file whole
    fetched = []

    def fake(url, timeout):
        fetched.append(url)
        raise OSError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    before = (out / "en.tsv").read_bytes()
    with pytest.raises(SpeechtlError, match="cannot download"):
        download_tts_xling(tmp_path, from_web=True)
    assert fetched and (out / "en.tsv").read_bytes() == before


def test_unshipped_language_names_the_fix(tmp_path):
    with pytest.raises(SpeechtlError, match=r"no shipped sentences for 'xx'.*--from-web"):
        shipped_lad_text(["xx"], tmp_path)
    assert not list(tmp_path.glob("*.tsv"))


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare -n")
def test_recipe_stage_0_runs_in_a_network_namespace_without_interfaces(tmp_path):
    """`./run.sh --stop-stage 0` with no network at all (unshare -n), as on an offline machine."""
    recipe = copy_recipe(REPO / "egs/tts_xling/ASR", tmp_path)
    env = venv_env()
    r = subprocess.run(
        ["unshare", "-n", "./run.sh", "--stop-stage", "0"], cwd=recipe, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(p.name for p in (recipe / "download/text").glob("*.tsv")) == [f"{lang}.tsv" for lang in LANGS]
    assert "shipped" in (r.stdout + r.stderr)


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare -n")
def test_ddp_training_falls_back_to_one_process_without_loopback(small_yesno, tmp_path):
    """`steps/train.sh --num-procs 2` in a namespace whose loopback is down trains in 1 process, and says so."""
    d, cuts, _ = small_yesno
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    conf = tmp_path / "train.yaml"
    conf.write_text(
        "model: {encoder: tdnn, num_features: 23}\ntrain: {num_epochs: 1, max_duration: 15, num_buckets: 2}\n"
    )
    env = venv_env()
    cmd = [REPO / "steps/train.sh", "--num-procs", "2", conf, d / "lang", tmp_path / "cuts.jsonl.gz", tmp_path / "exp"]
    r = subprocess.run(["unshare", "-n", *map(str, cmd)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "training in 1 process instead of 2" in r.stderr
    assert (tmp_path / "exp/final.pt").is_file()
