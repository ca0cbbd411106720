#!/usr/bin/env python3
"""Whisper encoder speed in one run: fine-tuning at the input's own length against padding
to 30 s, and our encoder's forward against transformers' at equal input.

1. Fine-tuning throughput: seconds of audio per second of one update (forward,
   CTC backward, AdamW step) of a CTC model on the Whisper encoder, for a batch
   of ``--batch`` utterances of ``--min-seconds``..``--max-seconds`` (FSDD's
   digits are about 0.5 s). "ours": the log-mel at each utterance's length,
   padding masked; "padded": the same encoder and weights with every input
   padded to 3000 frames (30 s) and attended to, which is how ``transformers``'
   ``WhisperEncoder`` (and the HF fine-tuning recipes) run it.
   ``finetune_ours_over_padded=<ratio>`` (goal >= 5).
2. Forward at equal input (``--forward-batch`` x 30 s, eval, no grad): our
   encoder against ``transformers.WhisperEncoder`` with the same weights.
   ``forward_ours_over_transformers=<ratio>`` of throughputs (goal >= 1.0).

Every case runs in its own child process, so its peak memory is its own: on
CUDA ``torch.cuda.max_memory_allocated``; on CPU the growth of the process's
peak resident set (``ru_maxrss``) over its size before the timed calls.
Times are the best of ``--repeats`` after one warm-up call. The weights are
``--model`` (default ``../shared/models/whisper-tiny.en``), or random weights of
tiny.en's size when that directory is missing (speed does not depend on them).
"""

import argparse
import multiprocessing as mp
import resource
import time
from pathlib import Path

import torch

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "whisper-tiny.en"
VOCAB = 12  # FSDD's digit words + blank and one spare


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mib(device: torch.device, before: float) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before


def best_of(repeats: int, fn, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def ctc_model(model_dir: str):
    from speechtl.models.ctc import ModelConfig, build_model
    from speechtl.models.pretrained import build_pretrained, parse_source

    if Path(model_dir).is_dir():
        return build_pretrained(parse_source(f"whisper:{model_dir}"), VOCAB)
    from dataclasses import asdict

    from speechtl.models.whisper import WhisperEncoderConfig

    cfg = ModelConfig(
        encoder="whisper", num_features=80, encoder_options=asdict(WhisperEncoderConfig()), input_norm="none"
    )
    return build_model(cfg, VOCAB)


def batch(a, seed: int = 0):
    """Log-mel of random-noise utterances of random lengths, and random 1-3 unit transcripts."""
    from speechtl.features.whisper_mel import BatchedWhisperMel

    g = torch.Generator().manual_seed(seed)
    secs = a.min_seconds + (a.max_seconds - a.min_seconds) * torch.rand(a.batch, generator=g)
    waves = [0.1 * torch.randn(int(s * 16000), generator=g) for s in secs.tolist()]
    mels = BatchedWhisperMel()(waves)
    lens = torch.tensor([m.size(0) for m in mels])
    feats = torch.nn.utils.rnn.pad_sequence(mels, batch_first=True)
    n_units = torch.randint(1, 4, (a.batch,), generator=g)
    targets = torch.randint(1, VOCAB, (int(n_units.sum()),), generator=g)
    return feats, lens, targets, n_units, float(secs.sum())


def finetune_case(a, padded: bool, out: mp.Queue) -> None:
    device = torch.device(a.device)
    torch.manual_seed(0)
    model = ctc_model(a.model).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    feats, lens, targets, n_units, audio = batch(a)
    if padded:  # transformers' way: every input 3000 frames, no mask
        floor = feats.new_full((feats.size(0), 3000 - feats.size(1), feats.size(2)), -0.5)
        feats, lens = torch.cat([feats, floor], dim=1), torch.full_like(lens, 3000)
    feats, lens, targets, n_units = feats.to(device), lens.to(device), targets.to(device), n_units.to(device)

    def update():
        log_probs, out_lens = model(feats, lens)
        loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, n_units, zero_infinity=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    before = rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = best_of(a.repeats, update, device)
    out.put((audio / t, t, peak_mib(device, before)))


def forward_case(a, ours: bool, out: mp.Queue) -> None:
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder as HfEncoder

    device = torch.device(a.device)
    torch.manual_seed(0)
    model = ctc_model(a.model)
    enc = model.encoder
    if not ours:  # the same weights in transformers' encoder
        c = enc.config
        hf = HfEncoder(
            WhisperConfig(
                d_model=c.d_model,
                encoder_layers=c.num_layers,
                encoder_attention_heads=c.num_heads,
                encoder_ffn_dim=c.ffn_dim,
                num_mel_bins=c.num_mels,
                max_source_positions=c.max_positions,
            )
        )
        hf.load_state_dict(hf_names(enc.state_dict()))
        enc = hf
    enc = enc.to(device).eval()
    x = 0.1 * torch.randn(a.forward_batch, 3000, 80, device=device)
    lens = torch.full((a.forward_batch,), 3000, device=device)

    @torch.no_grad()
    def forward():
        if ours:
            enc(x, lens)
        else:
            enc(x.transpose(1, 2))

    before = rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = best_of(a.repeats, forward, device)
    out.put((30.0 * a.forward_batch / t, t, peak_mib(device, before)))


def hf_names(state: dict) -> dict:
    """Our encoder's state dict under transformers' names."""
    out = {}
    for k, v in state.items():
        k = k.replace("positions", "embed_positions.weight").replace(".attn_norm.", ".self_attn_layer_norm.")
        k = k.replace(".ffn_norm.", ".final_layer_norm.").replace(".attn.", ".self_attn.")
        out["layer_norm." + k[5:] if k.startswith("norm.") else k] = v
    return out


def run(case, a, flag: bool):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=case, args=(a, flag, q))
    p.start()
    result = q.get()
    p.join()
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="HF Whisper directory (random tiny.en-size if missing)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=8, help="utterances per fine-tuning update")
    p.add_argument("--min-seconds", type=float, default=0.3)
    p.add_argument("--max-seconds", type=float, default=0.8)
    p.add_argument("--forward-batch", type=int, default=2, help="30-s inputs per forward call")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    weights = a.model if Path(a.model).is_dir() else "random (tiny.en size)"
    print(f"device={a.device} threads={torch.get_num_threads()} weights={weights}")
    print(f"fine-tuning: batch {a.batch} x {a.min_seconds}-{a.max_seconds} s, forward+CTC backward+AdamW step")
    ours = run(finetune_case, a, False)
    padded = run(finetune_case, a, True)
    for name, (rate, t, mem) in (("ours", ours), ("padded_30s", padded)):
        print(f"finetune_{name}: {rate:.2f} audio s/s ({t * 1000:.1f} ms/update), peak {mem:.0f} MiB")
    print(f"forward: {a.forward_batch} x 30 s, eval, no grad")
    fwd_ours = run(forward_case, a, True)
    fwd_hf = run(forward_case, a, False)
    for name, (rate, t, mem) in (("ours", fwd_ours), ("transformers", fwd_hf)):
        print(f"forward_{name}: {rate:.1f} audio s/s ({t * 1000:.1f} ms/call), peak {mem:.0f} MiB")
    print(f"finetune_ours_over_padded={ours[0] / padded[0]:.2f}")
    print(f"forward_ours_over_transformers={fwd_ours[0] / fwd_hf[0]:.2f}")


if __name__ == "__main__":
    main()
