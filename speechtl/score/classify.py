"""Utterance classification: predict, score (accuracy, macro precision/recall/F1), report.

Results go to ``exp/classify.tsv`` (``task method data accuracy precision
recall f1``, percent, macro-averaged over the classes of the reference),
one row per (task, method, data), replaced on a re-run like results.tsv's;
per system, ``predictions-<test_set>.txt`` (``cut<TAB>ref<TAB>hyp``),
``metrics-<test_set>.txt`` (per-class precision/recall/F1) and
``confusion-<test_set>.png``.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lhotse import CutSet

from speechtl.errors import SpeechtlError
from speechtl.features.compute import pick_device
from speechtl.features.inputs import mark_cuts
from speechtl.score.results import upsert_table
from speechtl.train.checkpoint import load_checkpoint, model_from_state
from speechtl.train.data import eval_dataloader, unpack
from speechtl.train.objectives import TASK_FIELDS, label_of

HEADER = ["task", "method", "data", "accuracy", "precision", "recall", "f1"]


@dataclass
class ClassifyScores:
    accuracy: float
    precision: float
    recall: float
    f1: float
    labels: list[str]
    confusion: np.ndarray  # rows: reference, columns: hypothesis, over ``labels``
    per_class: dict[str, tuple[float, float, float, int]]  # label -> (P, R, F1, support)


def score(pairs: Sequence[tuple[str, str]]) -> ClassifyScores:
    """Scores of (reference, hypothesis) pairs, in percent.

    Macro averages run over the reference's classes: a class the model
    predicts but the test set lacks adds false positives to nobody's recall
    and is not averaged in (its precision would be 0 by construction).
    """
    if not pairs:
        raise SpeechtlError("no predictions to score")
    refs = sorted({r for r, _ in pairs})
    labels = refs + sorted({h for _, h in pairs} - set(refs))
    index = {c: i for i, c in enumerate(labels)}
    conf = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for r, h in pairs:
        conf[index[r], index[h]] += 1
    per_class = {}
    for c in refs:
        i = index[c]
        tp, predicted, support = conf[i, i], conf[:, i].sum(), conf[i, :].sum()
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        per_class[c] = (100 * p, 100 * r, 100 * f, int(support))
    mean = lambda k: float(np.mean([v[k] for v in per_class.values()]))  # noqa: E731
    return ClassifyScores(100 * np.trace(conf) / len(pairs), mean(0), mean(1), mean(2), labels, conf, per_class)


def plot_confusion(scores: ClassifyScores, png: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(scores.labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n))
    ax.imshow(scores.confusion, cmap="Blues")
    ax.set_xticks(range(n), scores.labels, rotation=45, ha="right")
    ax.set_yticks(range(n), scores.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    top = scores.confusion.max() or 1
    for i in range(n):
        for j in range(n):
            v = scores.confusion[i, j]
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v > top / 2 else "black")
    ax.set_title(f"{title}\naccuracy {scores.accuracy:.1f}%, macro F1 {scores.f1:.1f}%", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


@torch.no_grad()
def predict(
    checkpoint: Path,
    cuts: CutSet,
    device: str | None = None,
    max_duration: float = 200.0,
) -> tuple[str, list[str], list[tuple[str, str, str]]]:
    """(task, classes, [(cut id, reference label, predicted label)]) of a classifier checkpoint on ``cuts``."""
    ckpt = load_checkpoint(checkpoint)
    task, classes = ckpt.get("task"), ckpt.get("classes")
    if task not in TASK_FIELDS or not classes:
        raise SpeechtlError(
            f"{checkpoint} is not an utterance classifier (trained with --task classify-...); "
            "decode CTC models with 'speechtl decode'"
        )
    dev = pick_device(device)
    model = model_from_state(ckpt).to(dev).eval()
    out = []
    for batch in eval_dataloader(mark_cuts(cuts, model.input_spec), max_duration):
        feats, lengths, _, batch_cuts = unpack(batch)
        log_probs, _ = model(feats.to(dev), lengths.to(dev))
        for cut, k in zip(batch_cuts, log_probs.argmax(-1).tolist(), strict=False):
            out.append((cut.id, label_of(cut, TASK_FIELDS[task]), classes[k]))
    return task, classes, sorted(out)


def evaluate_classifier(
    checkpoint: Path,
    cuts_path: Path,
    test_set: str,
    out_dir: Path,
    method: str,
    data: str,
    results_tsv: Path | None = None,
    device: str | None = None,
) -> ClassifyScores:
    """Predict ``cuts_path``, write predictions/metrics/confusion files and a classify.tsv row."""
    if not Path(cuts_path).is_file():
        raise SpeechtlError(f"test cuts {cuts_path} do not exist. Fix: run the fbank stage first.")
    task, classes, preds = predict(checkpoint, CutSet.from_file(cuts_path), device)
    unseen = sorted({r for _, r, _ in preds} - set(classes))
    if unseen:
        raise SpeechtlError(
            f"{test_set} has {TASK_FIELDS[task]} label(s) {unseen} that {checkpoint} never saw in training; "
            f"{task} is closed-set. Fix: test on the training classes (for speakers: the same "
            "--train-speakers and --test-speakers)."
        )
    s = score([(r, h) for _, r, h in preds])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"predictions-{test_set}.txt").write_text(
        "".join(f"{c}\t{r}\t{h}\n" for c, r, h in preds), encoding="utf-8"
    )
    lines = [
        f"{task} {method} {data} on {test_set}: {len(preds)} utterances",
        f"accuracy {s.accuracy:.2f}  macro precision {s.precision:.2f}  recall {s.recall:.2f}  f1 {s.f1:.2f}",
        "",
        f"{'class':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}",
    ]
    lines += [f"{c:<16}{p:>10.2f}{r:>10.2f}{f:>10.2f}{n:>9}" for c, (p, r, f, n) in s.per_class.items()]
    (out_dir / f"metrics-{test_set}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot_confusion(s, out_dir / f"confusion-{test_set}.png", f"{task}: {method} {data}")
    logging.info(f"{task} {method} {data} on {test_set}: accuracy {s.accuracy:.2f}%, macro F1 {s.f1:.2f}% -> {out_dir}")
    if results_tsv is not None:
        upsert_table(
            results_tsv,
            HEADER,
            [[task, method, data] + [f"{v:.2f}" for v in (s.accuracy, s.precision, s.recall, s.f1)]],
            3,
        )
        logging.info(f"results: {results_tsv}")
    return s
