"""Where things are: the repository, and the shared real data beside it (absent on some machines)."""
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
SHARED = REPOSITORY.parent / "shared"
XC10 = SHARED / "data" / "xc10"
PERCH_LABELS = SHARED / "labels" / "perch_v4_label.csv"
