"""Where manifests live: ``<dir>/<corpus>_{recordings,supervisions}_<split>.jsonl.gz`` (lhotse's layout).

Every corpus module writes through :func:`write_split`, so the fbank stage
(``speechtl.features.compute``) finds any corpus's splits by the same names.
"""

from pathlib import Path

from lhotse import RecordingSet, SupervisionSet


def write_split(
    output_dir: Path, corpus: str, split: str, recordings: RecordingSet, supervisions: SupervisionSet
) -> None:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    recordings.to_file(output_dir / f"{corpus}_recordings_{split}.jsonl.gz")
    supervisions.to_file(output_dir / f"{corpus}_supervisions_{split}.jsonl.gz")
