"""The `birdemb eda` report: every table as CSV and Markdown, every figure as PNG, and an
index.md that shows them together. Statistics come from birdemb.explore.stats, figures
from birdemb.explore.figures; this module only decides what goes where."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from birdemb import store
from birdemb.explore import stats
from birdemb.explore.hits import SOUNDSCAPE, DatasetLabels, load_store_labels
from birdemb.labels.mapping import SpeciesMapping, surrogate_species
from birdemb.labels.species import SpeciesError

PREVIEW_ROWS = 20  # rows of each table shown in index.md; the CSV and .md hold them all


@dataclass
class EdaOptions:
    threshold: float = 0.5  # pseudo-label: sigmoid(logit) > threshold
    min_support: float = 0.05  # share of a dataset's recordings
    min_confidence: float = 0.8
    max_len: int | None = 4  # longest itemset mined: a few-file dataset would otherwise list 2^species sets
    alpha: float = 1.0  # Laplace smoothing of the KL divergence
    top_species: int = 30  # bars in the frequency figure
    max_rules: int = 40  # arrows in a rules graph


@dataclass
class EdaReport:
    out: Path
    index: Path
    datasets: list[DatasetLabels]
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)


def markdown_table(table: pl.DataFrame, digits: int = 4) -> str:
    """A GitHub Markdown table; floats rounded to `digits` decimals."""
    def cell(value):
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return "" if value is None else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.iter_rows()]
    return "\n".join(lines) + "\n"


def write_table(table: pl.DataFrame, out: Path, name: str, title: str) -> None:
    table.write_csv(out / f"{name}.csv")
    (out / f"{name}.md").write_text(f"# {title}\n\n{markdown_table(table)}", encoding="utf-8")


def choose_species(store_dir, surrogate: str, taxonomy: dict[str, str] | None,
                   species_list: list[str] | None) -> SpeciesMapping:
    """All species the surrogate can name, or only those of species_list (in its order)."""
    datasets = [d for model, d, _ in store.partitions(store_dir) if model == surrogate]
    if not datasets:
        raise store.StoreError(f"{store_dir}: no datasets for model={surrogate}")
    labels = store.manifest(store_dir, surrogate, datasets[0]).get("labels")
    if not labels:
        raise store.StoreError(f"{surrogate} has no classifier labels in {store_dir}; choose another `surrogate`")
    known = surrogate_species(labels, taxonomy)
    if species_list is None:
        return known
    chosen = known.restrict(species_list)
    if not (chosen.index >= 0).any():
        hint = " (BirdNET species are eBird codes only with --taxonomy)" if known.naming != "ebird" else ""
        raise SpeciesError(f"none of the {len(species_list)} species of the list is known to {surrogate}{hint}")
    return chosen


def run_eda(store_dir, surrogate: str, out, taxonomy: dict[str, str] | None = None,
            species_list: list[str] | None = None, options: EdaOptions | None = None) -> EdaReport:
    options = options or EdaOptions()
    from birdemb.explore import figures as draw  # here, not at the top: every command would load matplotlib

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    species = choose_species(store_dir, surrogate, taxonomy, species_list)
    datasets = load_store_labels(store_dir, surrogate, species, options.threshold)
    report = EdaReport(out, out / "index.md", datasets)
    tables, figures = report.tables, report.figures

    tables["call_rates"] = stats.call_rates(datasets)
    tables["species_frequency"] = stats.frequency_table(datasets)
    tables["kl_divergence"] = stats.kl_table(tables["species_frequency"], datasets, options.alpha)
    figures["species_frequency"] = draw.frequency_figure(
        tables["species_frequency"], [d.dataset for d in datasets], out / "species_frequency.png", options.top_species,
        title="Species frequency, ranked by soundscapes")

    sizes = {}
    for d in datasets:
        baskets = list(stats.file_species_sets(d).values())
        sizes[d.dataset] = stats.itemset_sizes(baskets)
        itemsets = stats.frequent_itemsets(baskets, options.min_support, options.max_len)
        tables[f"itemsets_{d.dataset}"] = itemsets
        tables[f"rules_{d.dataset}"] = stats.association_rules(itemsets, len(baskets), options.min_confidence)
        figures[f"rules_{d.dataset}"] = draw.rules_graph_figure(
            tables[f"rules_{d.dataset}"], out / f"rules_{d.dataset}.png", options.max_rules,
            title=f"Association rules, {d.dataset} (confidence >= {options.min_confidence})")
    tables["itemset_sizes"] = pl.concat(
        [t.select(pl.lit(name).alias("dataset"), pl.all()) for name, t in sizes.items()])
    figures["itemset_sizes"] = draw.itemset_size_figure(sizes, out / "itemset_sizes.png")

    for name, table in tables.items():
        write_table(table, out, name, table_title(name))
    report.index.write_text(index_page(report, store_dir, surrogate, species, options), encoding="utf-8")
    return report


TITLES = {
    "call_rates": "Windows with at least one call",
    "species_frequency": "Species frequency, train versus soundscapes",
    "kl_divergence": "KL divergence D(soundscape || train)",
    "itemset_sizes": "Species per recording",
    "itemsets": "Frequent itemsets (FPGrowth)",
    "rules": "Association rules",
}


def table_title(name: str) -> str:
    for prefix in ("itemsets_", "rules_"):
        if name.startswith(prefix):
            return f"{TITLES[prefix[:-1]]}, {name[len(prefix):]}"
    return TITLES[name]


def _section(report: EdaReport, name: str, text: str = "") -> str:
    table = report.tables[name]
    shown = table.head(PREVIEW_ROWS)
    more = f"\n_First {PREVIEW_ROWS} of {table.height} rows._" if table.height > PREVIEW_ROWS else ""
    links = f"Full table: [{name}.csv]({name}.csv), [{name}.md]({name}.md).{more}\n"
    body = markdown_table(shown) if table.height else "_(empty)_\n"
    return f"{text}\n\n{body}\n{links}\n" if text else f"{body}\n{links}\n"


def index_page(report: EdaReport, store_dir, surrogate: str, species: SpeciesMapping, options: EdaOptions) -> str:
    naming = ("eBird codes" if species.naming == "ebird"
              else "BirdNET common names (no --taxonomy given, so no eBird codes)")
    soundscapes = [d.dataset for d in report.datasets if d.kind == SOUNDSCAPE]
    parts = [
        f"# Exploration of `{store_dir}`\n",
        f"Pseudo-labels of surrogate **{surrogate}**: a species is present in a 5 s window when "
        f"sigmoid(logit) > {options.threshold}. Species are named by {naming}; universe: "
        f"{len(species.names)} species the surrogate knows, of which {report.tables['species_frequency'].height} "
        f"are pseudo-labelled at least once. Datasets: "
        + ", ".join(f"{d.dataset} ({d.kind})" for d in report.datasets) + ".\n",
        "## Windows with at least one call\n",
        _section(report, "call_rates"),
        "## Species frequency, train versus soundscapes\n",
        "Share of each dataset's pseudo-labelled windows per species, ranked by "
        + ("soundscape frequency" if soundscapes else "train frequency (no soundscape dataset)") + ".\n",
        "![species frequency](species_frequency.png)\n",
        _section(report, "species_frequency"),
        "### KL divergence\n",
        _section(report, "kl_divergence",
                 f"D(P || Q) = sum p ln(p / q) in nats, P a soundscape and Q a train distribution over the "
                 f"species above, each count smoothed by +{options.alpha} (Laplace)."),
        "## Species per recording\n",
        "How many species each recording's windows are pseudo-labelled with (its itemset size).\n",
        "![itemset sizes](itemset_sizes.png)\n",
        _section(report, "itemset_sizes"),
    ]
    for d in report.datasets:
        parts += [
            f"## Frequent itemsets, {d.dataset}\n",
            _section(report, f"itemsets_{d.dataset}",
                     f"FPGrowth over the species sets of {len(d.files)} recordings, support >= "
                     f"{options.min_support}, at most {options.max_len} species per itemset."),
            f"## Association rules, {d.dataset}\n",
            f"![rules {d.dataset}](rules_{d.dataset}.png)\n",
            _section(report, f"rules_{d.dataset}", f"Rules with confidence >= {options.min_confidence}."),
        ]
    return "\n".join(parts)
