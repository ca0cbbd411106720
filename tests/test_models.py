"""Encoders: output lengths, and outputs that do not depend on the batch."""

import pytest
import torch

from speechtl.models import ModelConfig, build_model


@pytest.mark.parametrize("encoder,options,factor", [
    ("tdnn", {}, 1),
    ("lstm", {"hidden_dim": 16}, 1),
    ("conformer", {"d_model": 32, "num_heads": 2, "ffn_dim": 64, "num_layers": 2, "kernel_size": 7}, 4),
])
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
            alone_lp, alone_len = model(feats[i:i + 1, :n], lengths[i:i + 1])
            assert int(alone_len) == int(batch_lens[i])
            if factor > 1:
                assert int(alone_len) == ((n - 3) // 2 + 1 - 3) // 2 + 1
            torch.testing.assert_close(batch_lp[i, : int(alone_len)], alone_lp[0], atol=1e-4, rtol=1e-4)
    assert torch.allclose(batch_lp.exp().sum(-1), torch.ones(()), atol=1e-4)


def test_conformer_layers_are_addressable():
    model = build_model(ModelConfig(encoder="conformer", num_features=80,
                                    encoder_options={"d_model": 32, "num_heads": 2, "ffn_dim": 64, "num_layers": 3}), 10)
    assert len(model.encoder.layers) == 3
    names = {n.split(".")[2] for n, _ in model.named_parameters() if n.startswith("encoder.layers.")}
    assert names == {"0", "1", "2"}
