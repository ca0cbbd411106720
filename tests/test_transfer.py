"""Vocabulary transfer copies the rows of shared units and leaves the others fresh."""

import torch

from speechtl.adapt.transfer import init_from_source
from speechtl.models import ModelConfig, build_model
from speechtl.train.checkpoint import save_checkpoint


def test_vocabulary_transfer(tmp_path):
    cfg = ModelConfig(encoder="tdnn", num_features=23)
    src_tokens = {"<blk>": 0, "a": 1, "b": 2, "c": 3}
    tgt_tokens = {"<blk>": 0, "b": 1, "c": 2, "d": 3, "e": 4}
    torch.manual_seed(0)
    source = build_model(cfg, len(src_tokens))
    save_checkpoint(tmp_path / "src.pt", source)
    torch.manual_seed(1)
    target = build_model(cfg, len(tgt_tokens))
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = init_from_source(target, tmp_path / "src.pt", src_tokens, tgt_tokens)

    t, s = target.state_dict(), source.state_dict()
    for name in s:
        if not name.startswith("output."):
            assert torch.equal(t[name], s[name]), name
    for sym in ["<blk>", "b", "c"]:
        assert torch.equal(t["output.weight"][tgt_tokens[sym]], s["output.weight"][src_tokens[sym]])
        assert torch.equal(t["output.bias"][tgt_tokens[sym]], s["output.bias"][src_tokens[sym]])
    for sym in ["d", "e"]:
        assert torch.equal(t["output.weight"][tgt_tokens[sym]], fresh["output.weight"][tgt_tokens[sym]])
    assert report.shared_units == 3 and report.new_units == ["d", "e"] and not report.skipped


def test_mismatched_shapes_are_skipped_not_fatal(tmp_path):
    source = build_model(ModelConfig(encoder="tdnn", num_features=23, encoder_options={"hidden_dim": 16}), 4)
    save_checkpoint(tmp_path / "src.pt", source)
    target = build_model(ModelConfig(encoder="tdnn", num_features=23, encoder_options={"hidden_dim": 32}), 4)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    report = init_from_source(target, tmp_path / "src.pt", {"<blk>": 0}, {"<blk>": 0}, exclude=("output.",))
    assert any(k.endswith("0.0.weight") for k in report.skipped)
    assert all(k.endswith("num_batches_tracked") for k in report.copied)  # 0-dim counters do match
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items() if v.is_floating_point())


def test_a_letter_the_source_writes_another_way_starts_from_its_row(tmp_path, caplog):
    """A source trained on legacy Romanian (ş, ţ with the cedilla) and a target imported with the
    standard comma below (ș, ț: the import joins both forms to it): ș and ț start from the source's
    ş and ţ rows, not at random; á, only similar to a, stays a new unit."""
    import logging

    cfg = ModelConfig(encoder="tdnn", num_features=23)
    src_tokens = {"<blk>": 0, "a": 1, "\u015f": 2, "\u0163": 3}
    tgt_tokens = {"<blk>": 0, "\u021b": 1, "a": 2, "\u00e1": 3, "\u0219": 4}  # other places than the source's
    source = build_model(cfg, len(src_tokens))
    save_checkpoint(tmp_path / "src.pt", source)
    target = build_model(cfg, len(tgt_tokens))
    fresh = target.state_dict()["output.weight"].clone()
    with caplog.at_level(logging.INFO):
        report = init_from_source(target, tmp_path / "src.pt", src_tokens, tgt_tokens)
    w, s = target.state_dict()["output.weight"], source.state_dict()["output.weight"]
    assert torch.equal(w[4], s[2]) and torch.equal(w[1], s[3]) and torch.equal(w[2], s[1])
    assert torch.equal(w[3], fresh[3])
    assert report.same_letter == {"\u0219": "\u015f", "\u021b": "\u0163"} and report.new_units == ["\u00e1"]
    assert "2 started from the source's spelling of the same letter (ș from ş, ț from ţ)" in caplog.text


def test_a_source_of_another_script_says_only_its_encoder_transfers(tmp_path, caplog):
    """tts_xling's source for Thai: 4 of 68 target units shared, and the log only counted them. Below a
    quarter it says the rest start at random; a target that shares most of its units hears nothing."""
    import logging

    cfg = ModelConfig(encoder="tdnn", num_features=23)
    src_tokens = {"<blk>": 0, **{c: i for i, c in enumerate("abcdefghij", 1)}}
    save_checkpoint(tmp_path / "src.pt", build_model(cfg, len(src_tokens)))
    thai = {"<blk>": 0, "a": 1, **{c: i for i, c in enumerate("กขคงจฉชซฌญฎฏ", 2)}}
    with caplog.at_level(logging.WARNING):
        init_from_source(build_model(cfg, len(thai)), tmp_path / "src.pt", src_tokens, thai)
    assert "only 2 of the target's 14 units are in the source's output layer" in caplog.text
    assert "e.g. new: ก ข ค" in caplog.text
    caplog.clear()
    latin = {"<blk>": 0, **{c: i for i, c in enumerate("abcdefghijk", 1)}}
    with caplog.at_level(logging.WARNING):
        init_from_source(build_model(cfg, len(latin)), tmp_path / "src.pt", src_tokens, latin)
    assert "only" not in caplog.text
