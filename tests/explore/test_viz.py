"""PaCMAP projections (shape, determinism, sampling) and every figure written as a PNG."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from birdemb.cli import main
from birdemb.explore import figures
from birdemb.explore.projection import (
    OTHER,
    ProjectionError,
    file_projections,
    keep_top,
    pacmap_2d,
    sample_indices,
    window_projection,
)
from birdemb.explore.sample_store import TRAIN_SPECIES, write_sample_store

PNG = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 5000, f"{path} is not a real PNG figure"


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory):
    return write_sample_store(tmp_path_factory.mktemp("store"))


def clusters(n=120, dim=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (3, dim))
    labels = np.arange(n) % 3
    return (centres[labels] + rng.normal(0, 1, (n, dim))).astype(np.float32), labels


def test_pacmap_shape_and_determinism_under_a_seed():
    vectors, labels = clusters()
    first, again, other = pacmap_2d(vectors, seed=3), pacmap_2d(vectors, seed=3), pacmap_2d(vectors, seed=4)
    assert first.shape == (120, 2) and first.dtype == np.float32 and np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    # well-separated clusters stay separated: every point is nearer its own cluster's centre
    centres = np.stack([first[labels == k].mean(axis=0) for k in range(3)])
    nearest = np.linalg.norm(first[:, None, :] - centres[None], axis=2).argmin(axis=1)
    assert (nearest == labels).mean() > 0.95


def test_pacmap_refuses_too_few_points():
    with pytest.raises(ProjectionError, match="at least"):
        pacmap_2d(np.zeros((3, 5), np.float32))


def test_sample_is_capped_seeded_and_sorted():
    chosen = sample_indices(1000, 50, seed=1)
    assert len(chosen) == 50 == len(set(chosen.tolist())) and (np.diff(chosen) > 0).all()
    np.testing.assert_array_equal(chosen, sample_indices(1000, 50, seed=1))
    assert not np.array_equal(chosen, sample_indices(1000, 50, seed=2))
    np.testing.assert_array_equal(sample_indices(10, 50), np.arange(10))


def test_keep_top_greys_out_the_rest():
    assert keep_top(["a", "b", "a", "c", None, "b", "a"], 2) == ["a", "b", "a", OTHER, OTHER, "b", "a"]


def test_window_projection_keeps_top_species_and_caps_points(sample_store):
    projection = window_projection(sample_store, "toy", "train", top_n=3, max_points=50, seed=0)
    assert projection.points.shape == (50, 2)
    assert len(set(projection.labels)) == 3 and set(projection.labels) <= set(TRAIN_SPECIES)
    again = window_projection(sample_store, "toy", "train", top_n=3, max_points=50, seed=0)
    np.testing.assert_array_equal(projection.points, again.points)
    # soundscapes have no folder species: windows are named by the model's top pseudo-label
    scape = window_projection(sample_store, "toy", "soundscape", top_n=10, max_points=1000)
    assert OTHER not in scape.labels and len(scape.labels) == len(scape.points) > 0


def test_file_projections_are_mean_embedding_and_max_logits(sample_store):
    projections = file_projections(sample_store, "toy", "train", top_n=10)
    assert [p.points.shape for p in projections] == [(48, 2), (48, 2)]
    assert sorted(set(projections[0].labels)) == sorted(TRAIN_SPECIES)
    assert "mean embedding" in projections[0].title and "max logits" in projections[1].title


def test_every_eda_figure_is_written(tmp_path):
    frequencies = pl.DataFrame({"species": ["a", "b"], "train_share": [0.2, 0.8], "scape_share": [0.6, 0.4]})
    assert_png(figures.frequency_figure(frequencies, ["train", "scape"], tmp_path / "f.png"))
    sizes = pl.DataFrame({"species_per_recording": [0, 1, 2], "recordings": [1, 5, 2], "share": [0.125, 0.625, 0.25]})
    assert_png(figures.itemset_size_figure({"train": sizes, "scape": sizes}, tmp_path / "s.png"))
    rules = pl.DataFrame({"antecedent": ["a", "b", "a + b"], "consequent": ["b", "a", "c"],
                          "support": [0.3, 0.3, 0.2], "confidence": [1.0, 0.9, 0.85], "lift": [2.0, 1.5, 3.0]})
    assert_png(figures.rules_graph_figure(rules, tmp_path / "r.png"))
    assert_png(figures.rules_graph_figure(rules.head(0), tmp_path / "empty.png"))  # says so instead of failing
    points = np.random.default_rng(0).normal(size=(30, 2))
    assert_png(figures.projection_figure([(points, ["a"] * 10 + ["b"] * 10 + [OTHER] * 10, "panel")], tmp_path / "p.png"))


def test_commands_write_their_files(sample_store, tmp_path, capsys):
    assert main(["plot", "pacmap", "--store", str(sample_store), "--model", "toy", "--dataset", "train",
                 "--out", str(tmp_path / "windows.png"), "--top-n", "4", "--max-points", "100"]) == 0
    assert_png(tmp_path / "windows.png")
    assert main(["plot", "pacmap", "--store", str(sample_store), "--model", "toy", "--dataset", "soundscape",
                 "--per-file", "--out", str(tmp_path / "files.png")]) == 0
    assert_png(tmp_path / "files.png")
    assert main(["eda", "--store", str(sample_store), "--surrogate", "toy", "--out", str(tmp_path / "eda"),
                 "--min-support", "0.1"]) == 0
    printed = capsys.readouterr().out
    assert "KL(soundscape || train)" in printed and "index.md" in printed
    for name in ("species_frequency.png", "itemset_sizes.png", "rules_train.png", "rules_soundscape.png", "index.md"):
        assert (tmp_path / "eda" / name).stat().st_size > 0
    # a user mistake is one line on stderr and exit status 2, not a traceback
    assert main(["eda", "--store", str(sample_store), "--surrogate", "toy", "--out", str(tmp_path / "x"),
                 "--threshold", "1.5"]) == 2
    assert main(["plot", "pacmap", "--store", str(tmp_path / "nowhere"), "--model", "toy", "--dataset", "train",
                 "--out", str(tmp_path / "y.png")]) == 2
