"""Generated feature stores for training tests: each species' windows cluster around their
own centre, and the surrogate's logits are noisy but right."""
from __future__ import annotations

import numpy as np

from birdemb import store


def separable_store(root, n_files: int, windows_per_file: int, dim: int = 32, species=("a", "b", "c", "d"),
                    seed: int = 0, silent: bool = True, edit=None):
    """With `silent`, only every other window of a file holds the call. `edit(k, embedding,
    logits)` may change file k's arrays in place, or return the windows to keep (an index
    array), as if the others were never stored."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (len(species), dim)) * 3
    directory = store.partition_dir(root, "gen", "train")
    layout = {"window_s": 5.0, "frame_s": 5.0, "sample_rate": 32000}
    store.check_or_write_manifest(directory, {
        "model": "gen", "version": "1", "labels": list(species), "layout": layout, "embedding_dim": dim,
        "n_labels": len(species), "parameters": {"model": "gen", "layout": layout}})
    writer = store.PartWriter(directory, store.schema(dim, len(species)))
    for k in range(n_files):
        j = k % len(species)
        call = (np.arange(windows_per_file) % 2 == 0) if silent else np.ones(windows_per_file, dtype=bool)
        embedding = rng.normal(0, 1, (windows_per_file, dim)) + call[:, None] * centres[j]
        logits = rng.normal(-4, 1, (windows_per_file, len(species)))
        logits[:, j] += call * 8
        start = np.arange(windows_per_file) * 5.0
        keep = edit(k, embedding, logits) if edit else None
        keep = np.arange(windows_per_file) if keep is None else keep
        writer.add(store.FileRows(f"{species[j]}/f{k}.wav", species[j], [], 5.0 * windows_per_file, start[keep],
                                  start[keep] + 5, embedding[keep].astype(np.float32),
                                  logits[keep].astype(np.float32)))
    writer.flush()
    return root
