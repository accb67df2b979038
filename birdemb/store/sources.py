"""Where a partition's audio came from: `_audio_roots.json` beside its parts lists every
`--audio` folder an extraction read (absolute, in the order first used), so tools that play or
cut the stored windows (search clips, the app) find each file's audio, and serve none from
anywhere else."""
from __future__ import annotations

import json
from pathlib import Path

from birdemb.store.files import atomic_write_text, read_text
from birdemb.store.location import Folder

AUDIO_ROOTS = "_audio_roots.json"


def audio_roots(directory: Folder) -> list[str]:
    """The partition's recorded audio folders ([] for stores made before they were recorded)."""
    text = read_text(directory / AUDIO_ROOTS, errors="replace")
    if not text:
        return []
    try:
        roots = json.loads(text)
    except json.JSONDecodeError:
        return []  # a damaged list loses only the convenience: `--audio` can still say where
    return [str(root) for root in roots if isinstance(root, str)]


def record_audio_root(directory: Folder, root: str | Path) -> None:
    """Add `root` (made absolute) to the partition's audio folders, once."""
    root = str(Path(root).resolve())
    roots = audio_roots(directory)
    if root not in roots:
        atomic_write_text(directory / AUDIO_ROOTS, json.dumps([*roots, root], indent=1) + "\n")
