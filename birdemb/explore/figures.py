"""Figures of the exploration, as PNG files (matplotlib, Agg backend: no display needed).

Each function takes a table from birdemb.explore.stats or points from birdemb.explore.projection, writes one
PNG and returns its path.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (CI, servers, notebooks alike)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from birdemb.explore.projection import OTHER  # noqa: E402  (the grey "everything else" label)

DPI = 120


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def frequency_figure(frequencies: pl.DataFrame, datasets: list[str], path, top_n: int = 30,
                     title: str = "Species frequency (pseudo-labels)") -> Path:
    """Horizontal bars of each species' share of pseudo-labels, one colour per dataset, for
    the first `top_n` rows of the (already ranked) frequency table, highest at the top."""
    top = frequencies.head(top_n)
    species = top["species"].to_list()
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.28 * max(len(species), 1) * max(1, len(datasets)) ** 0.5))
    height = 0.8 / max(1, len(datasets))
    y = np.arange(len(species))
    for k, name in enumerate(datasets):
        ax.barh(y + (k - (len(datasets) - 1) / 2) * height, top[f"{name}_share"].to_numpy(), height=height, label=name)
    ax.set_yticks(y, species, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("share of the dataset's pseudo-labelled windows")
    ax.set_title(title if len(frequencies) <= top_n else f"{title}: top {top_n} of {len(frequencies)}")
    ax.legend(title="dataset", loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def itemset_size_figure(sizes: dict[str, pl.DataFrame], path,
                        title: str = "Species per recording (itemset size)") -> Path:
    """Grouped bars: share of each dataset's recordings holding exactly k species."""
    k_max = max((int(t["species_per_recording"].max() or 0) for t in sizes.values() if t.height), default=0)
    ks = np.arange(k_max + 1)
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(ks) + 3), 3.8))
    width = 0.8 / max(1, len(sizes))
    for k, (name, table) in enumerate(sizes.items()):
        share = dict(zip(table["species_per_recording"].to_list(), table["share"].to_list()))
        recordings = int(table["recordings"].sum())
        ax.bar(ks + (k - (len(sizes) - 1) / 2) * width, [share.get(int(i), 0.0) for i in ks], width=width,
               label=f"{name} ({recordings} recordings)")
    ax.set_xticks(ks)
    ax.set_xlabel("species pseudo-labelled in the recording")
    ax.set_ylabel("share of recordings")
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def rules_graph_figure(rules: pl.DataFrame, path, max_rules: int = 40, title: str = "Association rules") -> Path:
    """Rules as a directed graph: an arrow from the antecedent to the consequent, coloured by
    confidence and thicker for higher lift. Species-to-species rules are drawn when there are
    any (they read best); otherwise rules between species sets, as "a + b" nodes. At most the
    `max_rules` of highest lift are drawn so the graph stays legible; the CSV has them all."""
    import networkx as nx

    pairwise = rules.filter(~pl.col("antecedent").str.contains(" + ", literal=True)
                            & ~pl.col("consequent").str.contains(" + ", literal=True))
    candidates = pairwise if pairwise.height else rules
    shown = candidates.sort(["lift", "confidence", "antecedent", "consequent"],
                            descending=[True, True, False, False]).head(max_rules)
    graph = nx.DiGraph()
    for row in shown.iter_rows(named=True):
        graph.add_edge(row["antecedent"], row["consequent"], confidence=row["confidence"], lift=row["lift"])
    size = 4 + 0.7 * np.sqrt(graph.number_of_nodes())
    fig, ax = plt.subplots(figsize=(size + 2, size))
    if graph.number_of_edges() == 0:
        ax.text(0.5, 0.5, "no rules at this support and confidence", ha="center", va="center", transform=ax.transAxes)
    else:
        # A circle never overlaps nodes; ordering by connected group keeps related species adjacent.
        groups = sorted(nx.weakly_connected_components(graph), key=lambda g: (-len(g), sorted(g)))
        positions = nx.circular_layout([n for group in groups for n in sorted(group)])
        lifts = np.asarray([graph.edges[e]["lift"] for e in graph.edges])
        confidences = np.asarray([graph.edges[e]["confidence"] for e in graph.edges])
        widths = 1 + 3 * (lifts - lifts.min()) / (np.ptp(lifts) or 1)
        nx.draw_networkx_nodes(graph, positions, ax=ax, node_color="#4a7ea8", node_size=120)
        for node, (x, y) in positions.items():  # labels outside the circle, away from the arrows
            ax.text(x * 1.08, y * 1.08, node, fontsize=8, clip_on=False, va="center",
                    ha="left" if x > 0.01 else "right" if x < -0.01 else "center")
        colour_map, low = plt.get_cmap("viridis_r"), min(np.floor(confidences.min() * 10) / 10, 0.9)
        nx.draw_networkx_edges(graph, positions, ax=ax, width=widths, arrowsize=14, node_size=120,
                               edge_color=confidences, edge_cmap=colour_map, edge_vmin=low, edge_vmax=1.0,
                               connectionstyle="arc3,rad=0.1")
        scale = plt.cm.ScalarMappable(cmap=colour_map, norm=plt.Normalize(low, 1.0))
        fig.colorbar(scale, ax=ax, orientation="horizontal", shrink=0.4, pad=0.02, label="confidence")
        ax.set_xlim(-1.6, 1.6)  # room for the labels inside the axes
        ax.set_ylim(-1.2, 1.2)
    what = "species-to-species " if pairwise.height else ""
    count = f"{len(shown)} of {len(candidates)}" if len(candidates) > len(shown) else f"{len(shown)}"
    ax.set_title(f"{title}\n{count} {what}rules; arrow: antecedent -> consequent, width: lift", fontsize=10)
    ax.axis("off")
    return _save(fig, path)


def scatter_panel(ax, points: np.ndarray, labels: list[str], title: str) -> None:
    """One 2-D scatter, one colour per label, the OTHER label in light grey underneath."""
    labels_array = np.asarray(labels, dtype=object)
    order = [name for name in dict.fromkeys(labels) if name != OTHER]
    order = sorted(order, key=lambda name: -(labels_array == name).sum())
    colours = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
    marker = max(2.0, min(30.0, 3000 / max(1, len(points))))
    if (labels_array == OTHER).any():
        mask = labels_array == OTHER
        ax.scatter(points[mask, 0], points[mask, 1], s=marker, c="#cccccc", label=OTHER, linewidths=0)
    for k, name in enumerate(order):
        mask = labels_array == name
        ax.scatter(points[mask, 0], points[mask, 1], s=marker, color=colours(k % colours.N),
                   label=f"{name} ({mask.sum()})", linewidths=0)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=max(1.0, 6 / marker), loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


def projection_figure(panels: list[tuple[np.ndarray, list[str], str]], path, title: str = "") -> Path:
    """Side-by-side scatter panels (points [n, 2], labels, panel title) in one PNG."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), squeeze=False)
    for ax, (points, labels, panel_title) in zip(axes[0], panels):
        scatter_panel(ax, points, labels, panel_title)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
