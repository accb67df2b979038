"""Bench: head training with Lightning versus a bare PyTorch loop doing the same passes, and
the copies made reading embeddings from the store into tensors.

Both loops train the same linear head (Adam, batch 1000) on the same generated windows with
the same batch loader, and run the same whole-set validation metric every epoch; the ratio
is Lightning's overhead (target <= 1.3x).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from birdemb import store  # noqa: E402
from birdemb.training import heads, metrics  # noqa: E402
from birdemb.training.batches import batch_loader  # noqa: E402
from birdemb.training.losses import BCE  # noqa: E402
from birdemb.training.module import lightning_module_class, make_trainer  # noqa: E402
from birdemb.training.split import split_by_file  # noqa: E402

DIM, SPECIES = 1280, 182  # Perch-sized embeddings, BirdCLEF 2024's species count
DIM_GEN = 1024  # BirdNET-sized, for the convergence table


def generated(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    y = (rng.random((n, SPECIES), dtype=np.float32) < 0.02).astype(np.float32)
    files = np.repeat(np.arange(n // 10 + 1), 10)[:n].astype(str)  # 10 windows per file
    return x, y, files


def bare_loop(x, y, train_rows, val_rows, epochs, batch, seed) -> float:
    torch.manual_seed(seed)
    head = heads.build_head(DIM, SPECIES)
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-3)
    loss_fn = BCE()
    started = time.perf_counter()
    train_loader = batch_loader(x, y, train_rows, batch, shuffle=True, seed=seed)
    val_loader = batch_loader(x, y, val_rows, 4096, shuffle=False)
    epoch_metrics = metrics.EpochMetrics()
    for _ in range(epochs):
        head.train()
        for xb, yb in train_loader:
            optimiser.zero_grad()
            loss = loss_fn(head(xb), yb)
            loss.backward()
            optimiser.step()
        head.eval()
        with torch.no_grad():
            for xb, yb in val_loader:
                epoch_metrics.update(head(xb), yb)
        epoch_metrics.compute()
        epoch_metrics.reset()
    return time.perf_counter() - started


def lightning_loop(x, y, train_rows, val_rows, epochs, batch, seed) -> float:
    import lightning as L

    L.seed_everything(seed, verbose=False)
    per_pass = -(-len(train_rows) // batch)  # validate once per pass over the data, as the bare loop does
    val = torch.as_tensor(val_rows)
    module = lightning_module_class()(heads.build_head(DIM, SPECIES), BCE(), 1e-3, "adam", x[val], y[val].numpy(),
                                      check_every=per_pass)
    started = time.perf_counter()
    trainer = make_trainer(epochs * per_pass, tempfile.mkdtemp())
    trainer.fit(module, batch_loader(x, y, train_rows, batch, shuffle=True, seed=seed))
    return time.perf_counter() - started


READ_SCRIPT = """
import json, sys, numpy as np
sys.path.insert(0, {root!r})
from birdemb import store
from birdemb.training.windows import array_view, tensor_view

def peak_kb():  # VmHWM: this process's peak resident memory since the last reset
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])

def current_kb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])

def reset_peak():
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")

lazy = store.scan({store!r}, "bench", "train").select("embedding")
reset_peak(); base = current_kb()
column = lazy.collect()["embedding"]
decode_kb = peak_kb() - base
reset_peak(); base = current_kb()
chunks = column.n_chunks()
view = array_view(column)
tensor = tensor_view(view)
view_kb = peak_kb() - base
print(json.dumps({{"chunks": chunks, "nbytes": view.nbytes, "decode_kb": decode_kb, "view_kb": view_kb,
                   "tensor_shares_numpy": bool(np.shares_memory(tensor.numpy(), view))}}))
"""


def store_copies(n: int, parts: int) -> dict:
    """Write n windows as `parts` part files, then read them into a tensor in a fresh process
    and measure its peak memory: each full copy of the embeddings adds nbytes."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = store.partition_dir(tmp, "bench", "train")
        store.check_or_write_manifest(directory, {"model": "bench", "labels": None, "layout": {},
                                                   "parameters": {"model": "bench"}})
        writer = store.PartWriter(directory, store.schema(DIM, None))
        rng = np.random.default_rng(1)
        per_part = n // parts
        for p in range(parts):
            for f in range(per_part // 100):  # 100 windows per file
                emb = rng.standard_normal((100, DIM), dtype=np.float32)
                writer.add(store.FileRows(f"f{p}_{f}", "sp", [], 500.0, np.arange(100) * 5.0,
                                          np.arange(100) * 5.0 + 5, emb, None))
            writer.flush()
        out = subprocess.run([sys.executable, "-c", READ_SCRIPT.format(root=str(ROOT), store=tmp)],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def convergence(n: int, dim: int = DIM_GEN, species: int = SPECIES, seed: int = 0) -> dict:
    """`train_head` with its defaults on n generated windows (10 per file, one species per
    file, calls in half its windows, each species a cluster): time, solver and ground-truth
    AUROC at the paper's data size."""
    from birdemb.training.config import DataOptions, TrainConfig
    from birdemb.training.fit import train_head

    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (species, dim)).astype(np.float32)
    names = [f"sp{j:03d}" for j in range(species)]
    layout = {"window_s": 5.0, "frame_s": 5.0, "sample_rate": 32000}
    with tempfile.TemporaryDirectory() as tmp:
        directory = store.partition_dir(tmp, "gen", "train")
        store.check_or_write_manifest(directory, {"model": "gen", "version": "1", "labels": names, "layout": layout,
                                                  "parameters": {"model": "gen", "layout": layout}})
        writer = store.PartWriter(directory, store.schema(dim, species))
        call = (np.arange(10) % 2 == 0)
        for k in range(n // 10):
            j = k % species
            emb = rng.standard_normal((10, dim), dtype=np.float32) + call[:, None] * centres[j]
            logits = rng.normal(-4, 1, (10, species)).astype(np.float32)
            logits[:, j] += 6 * call
            writer.add(store.FileRows(f"{names[j]}/f{k}.wav", names[j], [], 50.0, np.arange(10) * 5.0,
                                      np.arange(10) * 5.0 + 5, emb, logits))
            if writer.pending_files >= 5000:
                writer.flush()
        writer.flush()
        started = time.perf_counter()
        result = train_head(TrainConfig(DataOptions(tmp, "gen", "gen")))
        seconds = time.perf_counter() - started
    m = result.metrics
    return {"n": n, "species": species, "seconds": seconds, "solver": m["fit"]["solver"], "steps": m["fit"]["steps"],
            "best_step": m["best_step"], "auroc": m["val_macro_auroc"], "file_auroc": m["files"]["head_macro_auroc"],
            "passthrough": m["passthrough"]["macro_auroc"]}


def run(quick: bool = False) -> str:
    sizes = (200, 20_000) if quick else (200, 20_000, 600_000)
    converged = [convergence(size, species=min(SPECIES, size // 50)) for size in sizes]  # >= 5 files a species
    n, epochs = (20_000, 5) if quick else (200_000, 20)
    torch.set_num_threads(os.cpu_count() or 1)
    x_np, y_np, files = generated(n)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    train_rows, val_rows = split_by_file(files, [None] * n, 0.2, seed=0)
    lightning_loop(x[:5000], y[:5000], train_rows[train_rows < 5000], val_rows[val_rows < 5000], 1, 1000, 0)  # warm-up
    bares, lights = [], []
    for _ in range(2 if quick else 1):  # interleaved, best of each: a busy machine skews one run
        bares.append(bare_loop(x, y, train_rows, val_rows, epochs, 1000, 0))
        lights.append(lightning_loop(x, y, train_rows, val_rows, epochs, 1000, 0))
    bare, light = min(bares), min(lights)
    copies = store_copies(n, parts=4)
    mb = copies["nbytes"] / 2**20
    return "\n".join([
        "## Head training (Lightning overhead)",
        "",
        f"Linear head {DIM} -> {SPECIES}, {n:,} generated windows ({len(train_rows):,} train / {len(val_rows):,} "
        f"validation, split by file), {epochs} epochs, batch 1000, Adam; both loops use the same batch loader "
        "and compute macro AUROC and F1 over the whole validation set each epoch.",
        "",
        "| loop | wall time (s) | per epoch (s) |",
        "|---|---|---|",
        f"| bare PyTorch | {bare:.1f} | {bare / epochs:.2f} |",
        f"| Lightning (birdemb.training) | {light:.1f} | {light / epochs:.2f} |",
        "",
        f"Lightning / bare: **{light / bare:.2f}x** (target <= 1.3x; best of {len(bares)} interleaved runs each; "
        f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores).",
        "",
        "### Reading embeddings from the store into tensors",
        "",
        f"{n:,} x {DIM} float32 embeddings ({mb:.0f} MiB) in {copies['chunks']} Parquet part files, read in a "
        "fresh process: Parquet decode, then `array_view` (one rechunk when there are several parts, "
        "then a zero-copy `to_numpy()`), then `torch.from_numpy`.",
        "",
        f"- peak memory of the Parquet decode: {copies['decode_kb'] / 1024:.0f} MiB "
        f"({copies['decode_kb'] * 1024 / copies['nbytes']:.2f}x the embeddings: reading, not copying)",
        f"- peak memory added on the way to numpy and torch: {copies['view_kb'] / 1024:.0f} MiB "
        f"(**{copies['view_kb'] * 1024 / copies['nbytes']:.2f} copies**: the one rechunk of "
        f"{copies['chunks']} chunks; 0 with one part file)",
        f"- torch tensor shares the numpy memory: {copies['tensor_shares_numpy']}",
        "",
        "### Convergence at every data size (train-head defaults)",
        "",
        f"`train_head` with its defaults on generated windows: {DIM_GEN}-d, {SPECIES} species (fewer on small sets: "
        "at least 5 files each), 10 windows per file "
        "(calls in half of them), 20% of the files held out; ground truth = the file's species on every window "
        "(so the window-level ceiling is below 1; at file level a head that learnt reaches 1). The default head "
        "adds the generated surrogate's logits (residual, see docs/training.md), which call the silent windows "
        "negative, so at window level it stays near passthrough.",
        "",
        "| windows (species) | solver | steps (best) | seconds (load + train) | val macro AUROC, windows | files | passthrough |",
        "|---:|---|---|---:|---:|---:|---:|",
        *[f"| {c['n']:,} ({c['species']}) | {c['solver']} | {c['steps']} ({c['best_step']}) | {c['seconds']:.0f} | {c['auroc']:.3f} "
          f"| {c['file_auroc']:.3f} | {c['passthrough']:.3f} |" for c in converged],
    ])


if __name__ == "__main__":
    print(run(quick="--quick" in sys.argv))
