"""Encoders: output lengths, and outputs that do not depend on the batch."""

import pytest
import torch

from speechtl.models import ModelConfig, build_model


@pytest.mark.parametrize(
    "encoder,options,factor",
    [
        ("tdnn", {}, 1),
        ("lstm", {"hidden_dim": 16}, 1),
        ("conformer", {"d_model": 32, "num_heads": 2, "ffn_dim": 64, "num_layers": 2, "kernel_size": 7}, 4),
    ],
)
def test_encoder_is_batch_invariant(encoder, options, factor):
    torch.manual_seed(0)
    model = build_model(ModelConfig(encoder=encoder, num_features=23, encoder_options=options), vocab_size=7).eval()
    lengths = torch.tensor([120, 77, 41])
    feats = torch.randn(3, 120, 23)
    for i, n in enumerate(lengths):
        feats[i, n:] = -23.0  # lhotse's feature padding value
    with torch.no_grad():
        batch_lp, batch_lens = model(feats, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone_lp, alone_len = model(feats[i : i + 1, :n], lengths[i : i + 1])
            assert int(alone_len) == int(batch_lens[i])
            if factor > 1:
                assert int(alone_len) == ((n - 3) // 2 + 1 - 3) // 2 + 1
            torch.testing.assert_close(batch_lp[i, : int(alone_len)], alone_lp[0], atol=1e-4, rtol=1e-4)
    assert torch.allclose(batch_lp.exp().sum(-1), torch.ones(()), atol=1e-4)


def test_conformer_layers_are_addressable():
    model = build_model(
        ModelConfig(
            encoder="conformer",
            num_features=80,
            encoder_options={"d_model": 32, "num_heads": 2, "ffn_dim": 64, "num_layers": 3},
        ),
        10,
    )
    assert len(model.encoder.layers) == 3
    names = {n.split(".")[2] for n, _ in model.named_parameters() if n.startswith("encoder.layers.")}
    assert names == {"0", "1", "2"}


def test_robust_input_norm_is_median_and_iqr_and_ignores_a_dead_stretch():
    """ "robust": each bin's median goes to 0 and its interquartile range to 1.349 over the valid
    frames (padding excluded, set to 0). A gated start (10% of the frames at the log floor) moves
    the other frames' normalized values much less than under "mvn"."""
    from speechtl.models.ctc import IQR_PER_SD, robust_normalize, utterance_normalize

    torch.manual_seed(0)
    feats = torch.randn(2, 201, 3) * 2.0 - 1.0
    lengths = torch.tensor([201, 101])
    feats[1, 101:] = 50.0  # padding: never counted
    out = robust_normalize(feats, lengths)
    for i, n in enumerate(lengths.tolist()):
        q = out[i, :n].sort(dim=0).values
        last = n - 1
        assert q[round(last * 0.5)].abs().max() < 1e-5
        iqr = q[round(last * 0.75)] - q[round(last * 0.25)]
        torch.testing.assert_close(iqr, torch.full((3,), IQR_PER_SD), rtol=1e-4, atol=1e-4)
        median = torch.quantile(feats[i, :n], 0.5, dim=0, interpolation="nearest")  # torch's own rank
        assert (out[i, :n] == 0).sum(0).tolist() == (feats[i, :n] == median).sum(0).tolist()
    assert float(out[1, 101:].abs().max()) == 0.0
    empty = robust_normalize(feats[:1], torch.tensor([0]))
    assert float(empty.abs().max()) == 0.0  # an empty utterance: zeros, not NaN
    flat = torch.full((1, 40, 1), -15.9)
    flat[0, 30:] = 2.0  # 75% of one bin at the log floor: IQR 0, the gain stays bounded
    assert float(robust_normalize(flat, torch.tensor([40])).abs().max()) <= 18.0 / 0.1 + 1e-3
    gated = feats[:1].clone()
    gated[0, :20] = -15.9  # log(float eps): a muted recorder
    full = torch.tensor([201])
    shift = {
        name: float((norm(gated, full)[0, 20:] - norm(feats[:1], full)[0, 20:]).abs().mean())
        for name, norm in (("robust", robust_normalize), ("mvn", utterance_normalize))
    }
    assert shift["robust"] < 0.5 * shift["mvn"], shift


def test_input_norm_modes():
    """ "mean" removes each utterance's channel offset but keeps its spread; "mvn" also
    scales to unit variance; padding never counts; true/false read as mvn/none."""
    from speechtl.errors import SpeechtlError
    from speechtl.models.ctc import input_norm_mode, utterance_normalize

    feats = torch.randn(2, 50, 4) * 3.0 + 7.0
    lengths = torch.tensor([50, 30])
    feats[1, 30:] = -23.0
    mean = utterance_normalize(feats, lengths, variance=False)
    mvn = utterance_normalize(feats, lengths)
    for i, n in enumerate(lengths.tolist()):
        valid = feats[i, :n]
        torch.testing.assert_close(mean[i, :n], valid - valid.mean(0))
        torch.testing.assert_close(mvn[i, :n].std(0, unbiased=False), torch.ones(4), rtol=1e-3, atol=1e-3)
    assert float(mean[1, 30:].abs().max()) == 0.0 and float(mvn[1, 30:].abs().max()) == 0.0
    assert [input_norm_mode(v) for v in (True, False, "mean", "mvn", "none", "robust")] == [
        "mvn",
        "none",
        "mean",
        "mvn",
        "none",
        "robust",
    ]
    with pytest.raises(SpeechtlError, match="input_norm must be one of"):
        build_model(ModelConfig(encoder="tdnn", num_features=4, input_norm="cmvn"), 5)
    model = build_model(ModelConfig(encoder="tdnn", num_features=4, input_norm="mean"), 5).eval()
    with torch.no_grad():  # a level shift of the whole utterance (gain, channel) changes nothing
        a, _ = model(feats[:1], lengths[:1])
        b, _ = model(feats[:1] + 5.0, lengths[:1])
    torch.testing.assert_close(a, b)
