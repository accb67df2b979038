"""Sweep job: train a grid of heads on one store and write results.md / results.parquet.

    python jobs/sweep.py --store STORE --surrogate birdnet --out sweeps/xc10 \
        [--embeddings birdnet,vocalization] [--losses bce,asl,sigmoidf1] [--labels species,pseudo]
        [--hidden 0,256] [--init scratch,surrogate] [--taxonomy eBird_Taxonomy_v2021.csv] ...

The same options as `birdemb sweep` (this job is that command, runnable from a checkout).
With --paper-losses the loss axis is the paper's: ASL gamma_pos in {0,1} x gamma_neg in
{0,2,4}, sigmoidF1 S in {-1,-15,-30} x E in {0,1}, and BCE.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from birdemb.cli import main
from birdemb.training.sweep import PAPER_LOSSES


def argv_for(args: list[str]) -> list[str]:
    if "--paper-losses" in args:
        args = [a for a in args if a != "--paper-losses"] + ["--losses", ",".join(PAPER_LOSSES)]
    return ["sweep", *args]


if __name__ == "__main__":
    sys.exit(main(argv_for(sys.argv[1:])))
