"""Where manifests live: ``<dir>/<corpus>_{recordings,supervisions}_<split>.jsonl.gz`` (lhotse's layout).

Every corpus module writes through :func:`write_split`, so the fbank stage
(``speechtl.features.compute``) finds any corpus's splits by the same names.
"""

from pathlib import Path

from lhotse import RecordingSet, SupervisionSet

from speechtl.atomic import atomic_path


def write_split(
    output_dir: Path, corpus: str, split: str, recordings: RecordingSet, supervisions: SupervisionSet
) -> None:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for manifest, kind in ((recordings, "recordings"), (supervisions, "supervisions")):
        with atomic_path(output_dir / f"{corpus}_{kind}_{split}.jsonl.gz") as tmp:  # whole or not at all
            manifest.to_file(tmp)
