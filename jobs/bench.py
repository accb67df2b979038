"""`make bench`: every benchmark section, measured in one run, written to docs/benchmarks.md.

Each section is a module jobs/bench_<topic>.py with `run(quick: bool) -> str` (Markdown).
Run them one after another on an otherwise idle machine: the figures are ratios measured
side by side, never thresholds in tests. `python jobs/bench.py --quick` for a smoke run;
`--only=extract,train` to rerun some sections (the others keep their last saved figures,
under bench-output/sections/).
"""
from __future__ import annotations

import importlib.util
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTIONS = ["quality", "extract", "memory", "backbones", "int8", "train", "submit", "detect", "search", "explore", "cooccurrence", "grids", "gridsim", "ray"]


SAVED = ROOT / "bench-output" / "sections"  # each section's last result, so one can be rerun alone


def load_section(name: str):
    path = HERE / f"bench_{name}.py"
    if not path.exists():
        return None
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # spawned worker processes import the section by name
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    only = next((a.split("=", 1)[1] for a in argv if a.startswith("--only=")), None)
    names = only.split(",") if only else SECTIONS
    parts = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {time.strftime('%Y-%m-%d')}: {platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cores, Python {platform.python_version()}"
        + (" (quick mode: smaller inputs)" if quick else "") + ".",
        "Every ratio compares figures taken in the same run on the same input.",
        "",
    ]
    for name in names:
        module = load_section(name)
        if module is None:
            continue
        print(f"== bench {name}", flush=True)
        started = time.perf_counter()
        try:
            section = module.run(quick=quick)
        except Exception:
            section = f"## {name}\n\nFAILED:\n\n```\n{traceback.format_exc()}\n```"
        print(section, flush=True)
        saved = SAVED / ("quick" if quick else "full") / f"{name}.md"
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(f"{section}\n\n_(section took {time.perf_counter() - started:.0f} s, "
                         f"measured {time.strftime('%Y-%m-%d %H:%M')})_\n")
    for name in SECTIONS:  # sections not rerun this time keep their last figures
        saved = SAVED / ("quick" if quick else "full") / f"{name}.md"
        if saved.exists():
            parts += [saved.read_text(), ""]
    out = ROOT / "docs" / ("benchmarks-quick.md" if quick else "benchmarks.md")
    out.write_text("\n".join(parts))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
