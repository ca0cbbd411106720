"""ESPnet-style transfer options on any method: --init-param PATH:SRC:DST:EXCLUDE and --freeze-param."""

import logging
from pathlib import Path

import pytest
import torch
import yaml

from speechtl.adapt.param_options import InitParam, apply_init_params, freeze_params, init_from
from speechtl.cli import main
from speechtl.errors import SpeechtlError
from speechtl.models import ModelConfig, build_model
from speechtl.train.checkpoint import config_digest, load_checkpoint, save_checkpoint
from speechtl.train.trainer import seed_everything

TINY = ModelConfig(
    encoder="conformer",
    num_features=23,
    encoder_options=dict(
        d_model=16, num_heads=2, ffn_dim=32, num_layers=2, kernel_size=3, dropout=0.0, subsampling_channels=4
    ),
)


def model(seed: int, vocab: int = 5):
    seed_everything(seed)
    return build_model(TINY, vocab)


def test_parse_specs(tmp_path):
    assert InitParam.parse("a.pt") == InitParam(Path("a.pt"))
    p = InitParam.parse("exp/s/final.pt:module.encoder:encoder.:output, encoder.layers.1")
    assert (str(p.path), p.src, p.dst, p.exclude) == (
        "exp/s/final.pt",
        "module.encoder",
        "encoder",
        ("output", "encoder.layers.1"),
    )
    assert str(InitParam.parse("x.pt:encoder:encoder")) == "x.pt:encoder:encoder"
    odd = tmp_path / "run:2" / "final.pt"  # an existing file whose path holds a colon is taken whole
    odd.parent.mkdir()
    odd.write_bytes(b"")
    assert InitParam.parse(str(odd)) == InitParam(odd)
    with pytest.raises(SpeechtlError, match="expected PATH"):
        InitParam.parse("a:b:c:d:e")
    with pytest.raises(SpeechtlError, match="expected PATH"):
        InitParam.parse(":encoder")


def test_ddp_prefix_is_mapped_and_excluded_parts_stay(tmp_path):
    """A state dict saved from a DDP wrapper (module.*), another vocabulary: the encoder maps over,
    the excluded layer and the output layer of another shape keep the model's own values."""
    src = model(1, vocab=9)
    path = tmp_path / "ddp.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}, path)
    dst = model(2)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    (report,) = apply_init_params(dst, [f"{path}:module::module.encoder.layers.1"])
    after = dst.state_dict()
    for k in after:
        if k.startswith("encoder.layers.1.") or k.startswith("output."):
            assert torch.equal(after[k], before[k]), k
        else:
            assert torch.equal(after[k], src.state_dict()[k]), k
    assert ("output.weight", "shape (9, 16), the model's (5, 16)") in report.skipped
    assert not any(k.startswith("encoder.layers.1.") for k in report.copied)


def test_src_and_dst_prefixes_rename(tmp_path):
    """One layer's weights into another layer (as ESPnet's src_key/dst_key), fp16 cast to the model's dtype."""
    src = model(1)
    path = tmp_path / "s.pt"
    torch.save({k: v.half() for k, v in src.state_dict().items()}, path)
    dst = model(2)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    report = init_from(dst, InitParam(path, "encoder.layers.0", "encoder.layers.1"))
    after = dst.state_dict()
    assert report.copied and all(k.startswith("encoder.layers.1.") for k in report.copied)
    for k in report.copied:
        assert after[k].dtype == before[k].dtype
        assert torch.equal(after[k], src.state_dict()[k.replace("layers.1.", "layers.0.")].half().float())
    assert torch.equal(after["encoder.layers.0.ff1.net.1.weight"], before["encoder.layers.0.ff1.net.1.weight"])
    from safetensors.torch import save_file  # as Hugging Face saves models; all but the output layer

    save_file(src.state_dict(), tmp_path / "s.safetensors")
    dst = model(2)
    (report,) = apply_init_params(dst, [f"{tmp_path / 's.safetensors'}:::output"])
    assert set(report.copied) == {k for k in src.state_dict() if not k.startswith("output.")}


def test_mistakes_name_the_file_and_the_fix(tmp_path, caplog):
    path = tmp_path / "s.pt"
    save_checkpoint(path, model(1))
    with pytest.raises(SpeechtlError, match=r"no tensor of .*s\.pt is under 'decoder'; its names look like encoder\."):
        init_from(model(2), InitParam(path, "decoder"))
    with pytest.raises(SpeechtlError, match=r"the model has nothing under 'enc'.*Fix: a DST prefix"):
        init_from(model(2), InitParam(path, "encoder", "enc"))
    other = tmp_path / "wide.pt"
    seed_everything(0)
    options = {**TINY.encoder_options, "d_model": 8}
    save_checkpoint(other, build_model(ModelConfig(**{**TINY.to_dict(), "encoder_options": options}), 5))
    caplog.set_level(logging.WARNING)
    report = init_from(model(2), InitParam(other, "encoder.layers", "encoder.layers"))
    assert 0 < len(report.copied) < len(report.skipped)  # the feed-forward biases (ffn_dim) fit by chance
    assert "is it the architecture meant?" in caplog.text
    save_checkpoint(
        other, build_model(ModelConfig(**{**TINY.to_dict(), "encoder_options": {**options, "ffn_dim": 24}}), 5)
    )
    with pytest.raises(SpeechtlError, match=r"none of the .* tensors fits the model .*shape .*Fix: SRC and DST"):
        init_from(model(2), InitParam(other, "encoder.layers", "encoder.layers"))
    with pytest.raises(SpeechtlError, match="does not exist"):
        init_from(model(2), InitParam(tmp_path / "nope.pt"))
    (tmp_path / "list.pt").write_bytes(b"")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(SpeechtlError, match=r"list\.pt holds no named tensors \(a list\)"):
        init_from(model(2), InitParam(tmp_path / "list.pt"))
    with pytest.raises(SpeechtlError, match="an empty prefix would freeze everything"):
        freeze_params(model(2), [""])
    with pytest.raises(SpeechtlError, match=r"\['encoder.nope'\] match no parameter"):
        freeze_params(model(2), ["encoder.layers.0", "encoder.nope"])
    assert freeze_params(model(2), ["encoder.layers.0"])  # whole name parts: layers.0 is not layers.0x


def test_train_cli_inits_freezes_and_records_it(small_yesno, tmp_path, capfd):
    """scratch (random start) + --init-param of a source's encoder + --freeze-param of its front end:
    the front end is the source's, bitwise, after training; the layers above trained from the source's
    values; the output layer is scratch's own; the checkpoint's config says how it was made."""
    d, cuts, lang = small_yesno
    src = model(1, lang.vocab_size)
    source = tmp_path / "source.pt"
    save_checkpoint(source, src, tokens=lang.token2id)
    cuts_path = tmp_path / "cuts.jsonl.gz"
    cuts.to_file(cuts_path)
    conf = tmp_path / "train.yaml"
    conf.write_text(
        yaml.safe_dump(
            {
                "model": TINY.to_dict(),
                "train": {"num_steps": 2, "max_duration": 400, "num_buckets": 2, "average_last": 1, "lr": 0.05},
            }
        )
    )
    common = ["train", "--config", conf, "--lang-dir", d / "lang", "--train-cuts", cuts_path, "--method", "scratch"]
    exp = tmp_path / "exp"
    args = [
        *common,
        "--exp-dir",
        exp,
        "--init-param",
        f"{source}:encoder:encoder",
        "--freeze-param",
        "encoder.subsampling",
    ]
    assert main([str(a) for a in args]) == 0
    log = (exp / "log" / "log-train.txt").read_text()
    assert f"init_param {source}:encoder:encoder: " in log and "freeze_param encoder.subsampling: " in log
    listed = (exp / "init_param.tsv").read_text().splitlines()
    assert listed[0] == "spec\ttensor\toutcome"
    assert f"{source}:encoder:encoder\tencoder.layers.0.ff1.net.1.weight\tcopied" in listed
    assert len(listed) == 1 + sum(k.startswith("encoder.") for k in src.state_dict())
    ckpt = load_checkpoint(exp / "final.pt")
    got, want = ckpt["model"], src.state_dict()
    front = [k for k in want if k.startswith("encoder.subsampling.")]
    assert front and all(torch.equal(got[k], want[k]) for k in front)
    assert not torch.equal(got["encoder.layers.0.ff1.net.1.weight"], want["encoder.layers.0.ff1.net.1.weight"])
    assert not torch.equal(got["output.weight"], want["output.weight"])
    assert ckpt["train_config"]["init_param"] == [f"{source}:encoder:encoder"]
    assert ckpt["train_config"]["freeze_param"] == ["encoder.subsampling"]
    # The same run without the options is another system in results.tsv; its layers are further
    # from the source's (the init of the unfrozen layers happened, then they trained)
    plain = tmp_path / "plain"
    assert main([str(a) for a in [*common, "--exp-dir", plain]]) == 0
    other = load_checkpoint(plain / "final.pt")
    assert config_digest(ckpt) != config_digest(other)
    k = "encoder.layers.1.ff2.net.1.weight"
    assert (got[k] - want[k]).norm() < 0.7 * (other["model"][k] - want[k]).norm()
    # Asked for afterwards in the same exp dir, the init would be skipped by the resume: refused
    rc = main([str(a) for a in [*common, "--exp-dir", plain, "--set", f"init_param={source}:encoder:encoder"]])
    assert rc == 1 and "was trained with train.init_param [], and this run asks for" in capfd.readouterr().err
    # Resumed without the init it was trained with: its weights have it already, nothing is lost
    assert main([str(a) for a in [*common, "--exp-dir", exp, "--freeze-param", "encoder.subsampling"]]) == 0
    # Freezing everything trains nothing: said before the first step, not as a traceback in backward()
    rc = main(
        [
            str(a)
            for a in [*common, "--exp-dir", tmp_path / "all", "--freeze-param", "encoder", "--freeze-param", "output"]
        ]
    )
    assert rc == 1 and "nothing trains" in capfd.readouterr().err
    # A missing init file stops the run before any work, naming it
    assert main([str(a) for a in [*common, "--exp-dir", tmp_path / "x", "--init-param", tmp_path / "gone.pt"]]) != 0
    assert "gone.pt does not exist. Fix: the path of a checkpoint" in capfd.readouterr().err
    assert not (tmp_path / "x" / "log").exists()


def test_lora_is_merged_other_units_and_exclude_typos(tmp_path, caplog):
    """A LoRA-trained speechtl checkpoint names its adapted weights ...parametrizations.weight.original
    (+ lora_a/lora_b): a plain model got none of them, and only an INFO line said so."""
    seed_everything(1)
    src = build_model(ModelConfig(**{**TINY.to_dict(), "peft": {"kind": "lora", "dim": 2, "alpha": 4.0}}), 5)
    for name, p in src.named_parameters():
        if name.endswith("lora_b"):
            torch.nn.init.normal_(p)  # as after training: B @ A no longer zero
    path = tmp_path / "lora.pt"
    save_checkpoint(path, src, tokens={f"u{i}": i for i in range(5)})
    key = next(n for n, _ in src.named_parameters() if n.endswith(".original")).replace(".parametrizations.", ".")
    key = key.removesuffix(".original")  # e.g. encoder.layers.0.attn.in_proj_weight
    owner, weight = key.rsplit(".", 1)
    merged = getattr(src.get_submodule(owner), weight).detach()  # W + scale * B @ A
    dst = model(2)
    report = init_from(dst, InitParam(path, "encoder", "encoder"))
    assert torch.allclose(dst.state_dict()[key], merged) and key in report.copied
    assert not report.skipped
    # other units: the output layer of a checkpoint whose units are not the run's is not copied
    dst = model(2)
    before = dst.state_dict()["output.weight"].clone()
    caplog.set_level(logging.INFO)
    report = init_from(dst, InitParam(path), tokens={f"v{i}": i for i in range(5)})
    assert torch.equal(dst.state_dict()["output.weight"], before)
    assert ("output.weight", "the file's units are not this run's") in report.skipped
    report = init_from(model(2), InitParam(path), tokens={f"u{i}": i for i in range(5)})
    assert "output.weight" in report.copied
    # an EXCLUDE that names nothing is a typo: it would copy what it meant to leave out
    with pytest.raises(SpeechtlError, match=r"EXCLUDE \['outptu'\] names no tensor"):
        init_from(model(2), InitParam(path, exclude=("outptu",)))


def test_one_spec_as_a_string_is_a_list_of_one(small_yesno, tmp_path, capfd):
    d, cuts, _ = small_yesno
    cuts_path = tmp_path / "cuts.jsonl.gz"
    cuts.to_file(cuts_path)
    conf = tmp_path / "train.yaml"
    train = {
        "num_steps": 1,
        "max_duration": 400,
        "num_buckets": 2,
        "average_last": 1,
        "freeze_param": "encoder.subsampling",
    }
    conf.write_text(yaml.safe_dump({"model": TINY.to_dict(), "train": train}))
    args = ["train", "--config", conf, "--lang-dir", d / "lang", "--train-cuts", cuts_path, "--exp-dir", tmp_path / "e"]
    assert main([str(a) for a in [*args, "--set", "init_param=nope.pt"]]) == 1
    assert "nope.pt does not exist" in capfd.readouterr().err  # read as a spec, not refused as a str
    assert main([str(a) for a in args]) == 0
    assert load_checkpoint(tmp_path / "e" / "final.pt")["train_config"]["freeze_param"] == ["encoder.subsampling"]


def test_the_conf_key_follows_the_init_file_not_only_its_name(tmp_path, capsys):
    """A conf names its init_param file by path: retrained in place, it left every model started
    from it as it was (speechtl conf-key, which the recipes' keys hold, saw the same text)."""
    import os

    init = tmp_path / "init.pt"
    torch.save({"w": torch.zeros(2)}, init)
    conf = tmp_path / "adapt.yaml"
    conf.write_text(f"train: {{init_param: ['{init}:encoder']}}\nmethods: {{finetune: {{}}}}\n")
    plain = tmp_path / "plain.yaml"
    plain.write_text("train: {}\nmethods: {finetune: {}}\n")

    def key(path: Path) -> str:
        assert main(["conf-key", "--config", str(path), "--method", "finetune"]) == 0
        return capsys.readouterr().out.strip()

    first = key(conf)
    assert first.startswith("conf=") and " init=" in first and key(conf) == first
    os.utime(init, (os.stat(init).st_atime, os.stat(init).st_mtime + 10))  # retrained: a new mtime
    assert key(conf) != first
    init.unlink()
    assert key(conf).endswith(" init=none")
    assert " " not in key(plain)  # no init_param: the key is what it was before (conf=DIGEST)


def test_conf_key_does_not_load_torch(tmp_path):
    """Recipes call `speechtl conf-key` once or more per system: importing torch for the init_param
    stamp made each call 4 s instead of 0.2 s (the whole fsdd recipe test ran 20 minutes longer)."""
    import subprocess
    import sys

    conf = tmp_path / "adapt.yaml"
    conf.write_text("train: {init_param: ['x.pt:encoder']}\nmethods: {finetune: {}}\n")
    script = (
        "import sys; from speechtl.cli import main; "
        f"main(['conf-key', '--config', {str(conf)!r}, '--method', 'finetune']); "
        "print('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    assert out[0].startswith("conf=") and out[1:] == ["init=none", "False"]
