"""Batched CTC greedy search; runs on whatever device the log-probs are on."""

import torch


def ctc_greedy_search(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best token per frame, repeats merged, blanks dropped.

    Args:
      log_probs: (batch, frames, vocab).
      lengths: (batch,) valid frames per row.
    Returns:
      One token-id list per row.
    """
    best = log_probs.argmax(dim=-1)  # (B, T)
    prev = torch.nn.functional.pad(best, (1, 0), value=blank)[:, :-1]
    frames = torch.arange(best.size(1), device=best.device)[None, :]
    keep = (best != prev) & (best != blank) & (frames < lengths.to(best.device)[:, None])
    best, keep = best.cpu(), keep.cpu()
    return [best[i][keep[i]].tolist() for i in range(best.size(0))]
