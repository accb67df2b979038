"""The review queue: windows proposed for one species, the most useful to label first.

With a trained head, the most uncertain first (probability nearest 0.5: where a label teaches
the head most); without one, the highest surrogate score first. Windows already decided for the
species are left out, so each click brings the next window."""
from __future__ import annotations

import numpy as np

from birdemb.explore.app.data import SCORE_PREFIX


def queue(table, species: str, decided: set[tuple], uncertain_first: bool, limit: int = 10) -> list[int]:
    """Rows of the windows table to review for `species`, best first."""
    column = SCORE_PREFIX + species
    if column not in table.columns:
        return []
    scores = table[column].to_numpy()
    order = np.argsort(np.abs(scores - 0.5), kind="stable") if uncertain_first else np.argsort(-scores, kind="stable")
    files, starts = table["file"].to_list(), table["start_s"].to_list()
    out = []
    for i in order.tolist():
        if (files[i], round(float(starts[i]), 3), species) not in decided:
            out.append(int(table["row"][i]))
            if len(out) == limit:
                break
    return out
