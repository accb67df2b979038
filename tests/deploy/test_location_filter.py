"""The location filter (birdemb.deploy.location_filter) against species_for_place: BirdNET's
own labels by scientific name, eBird codes through the real xc10 taxonomy, per-file places
from a metadata CSV, BirdNET weeks of dates, birds-only, and unmatched labels kept."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from birdemb.backbones.birdnet import BirdNET
from birdemb.backbones.birdnet_location import species_for_place
from birdemb.deploy.location_filter import (
    LocationFilter,
    LocationOptions,
    Place,
    birdnet_week,
    file_masks,
    read_places,
)
from birdemb.errors import UsageError
from birdemb.labels.species import read_taxonomy

PLACES = [Place(37.77, -122.42, 20), Place(-33.9, 151.2, 40), Place(42.44, -76.5, -1)]  # SF May, Sydney Oct, Ithaca
NOT_IN_BIRDNET = ["zzzfake1"]  # a code no taxonomy knows


@pytest.fixture(scope="module")
def birdnet_labels() -> list[str]:
    return BirdNET().labels


@pytest.fixture(scope="module")
def taxonomy_file(xc10):
    return xc10 / "eBird_Taxonomy_v2021.csv"


@pytest.fixture(scope="module")
def xc10_species(xc10) -> dict[str, str]:
    """eBird code -> scientific name (lower case), from the metadata (not the taxonomy)."""
    with open(xc10 / "train_metadata.csv", newline="") as handle:
        return {row["primary_label"]: row["scientific_name"].strip().lower() for row in csv.DictReader(handle)}


def expected_names(place: Place) -> set[str]:
    return {s.scientific_name.lower() for s in species_for_place(place.lat, place.lon, place.week)}


@pytest.mark.parametrize("place", PLACES)
def test_birdnet_labels_kept_exactly_as_species_for_place(birdnet_labels, place):
    location = LocationFilter(birdnet_labels)
    mask = location.mask(place)
    expected = {s.label for s in species_for_place(place.lat, place.lon, place.week)}
    non_species = {label for label in birdnet_labels if label.split("_", 1)[0] == label.split("_", 1)[-1]}
    assert len(non_species) > 5 and set(location.unmatched) == non_species  # engine, dog, ...: kept, counted
    kept = {label for label, keep in zip(birdnet_labels, mask) if keep}
    assert kept == expected | non_species
    assert 20 < len(expected) < len(birdnet_labels) / 4


@pytest.mark.parametrize("place", PLACES)
def test_ebird_codes_matched_through_the_taxonomy(taxonomy_file, xc10_species, place):
    codes = [*xc10_species, *NOT_IN_BIRDNET]
    location = LocationFilter(codes, read_taxonomy(taxonomy_file))
    expected = expected_names(place)
    mask = location.mask(place)
    for code, keep in zip(codes, mask):
        if code in xc10_species:
            assert keep == (xc10_species[code] in expected), code
        else:
            assert keep  # unmatched: kept
    assert location.unmatched == NOT_IN_BIRDNET


def test_places_far_apart_keep_different_species(taxonomy_file, xc10_species):
    location = LocationFilter(list(xc10_species), read_taxonomy(taxonomy_file))
    san_francisco, sydney = location.mask(PLACES[0]), location.mask(PLACES[1])
    assert san_francisco.sum() >= 7 and sydney.sum() <= 3  # the xc10 birds are Californian
    assert location.mask(None).all()  # no place: nothing dropped


def test_per_file_places_from_a_metadata_csv(tmp_path, taxonomy_file, xc10_species):
    metadata = tmp_path / "meta.csv"
    metadata.write_text("filename,latitude,longitude,date\n"
                        "site_a/sf.ogg,37.77,-122.42,2024-05-10\n"
                        "syd.ogg,-33.9,151.2,\n"
                        "nowhere.ogg,,,2024-01-01\n")
    places = read_places(metadata, week=40)
    assert places["site_a/sf.ogg"] == places["sf.ogg"] == Place(37.77, -122.42, birdnet_week("2024-05-10"))
    assert places["syd.ogg"] == Place(-33.9, 151.2, 40)  # no date: the week given
    assert "nowhere.ogg" not in places  # no coordinates: no place
    species = list(xc10_species)
    files = ["sf.ogg", "syd.ogg", "nowhere.ogg", "absent.ogg"]
    options = LocationOptions(metadata=str(metadata), week=40, taxonomy=str(taxonomy_file))
    masks, lines = file_masks(files, species, options)
    assert set(masks) == {"sf.ogg", "syd.ogg"}  # files without a place are not filtered
    location = LocationFilter(species, read_taxonomy(taxonomy_file))
    assert masks["sf.ogg"] == tuple(location.mask(Place(37.77, -122.42, 18)))
    assert masks["syd.ogg"] == tuple(location.mask(Place(-33.9, 151.2, 40)))
    assert masks["sf.ogg"] != masks["syd.ogg"]
    assert "2 file(s) without a place: not filtered" in lines
    assert lines[-1] == "0 of 10 labels could not be matched by scientific name"
    # with --lat/--lon, files the metadata lacks use that place
    masks, _ = file_masks(files, species, LocationOptions(lat=-33.9, lon=151.2, week=40, metadata=str(metadata),
                                                          taxonomy=str(taxonomy_file)))
    assert masks["absent.ogg"] == masks["nowhere.ogg"] == masks["syd.ogg"] != masks["sf.ogg"]


def test_birdnet_week_four_per_month():
    assert [birdnet_week(d) for d in ("2024-01-01", "2024-01-07", "2024-01-08", "2024-01-31", "2024-05-10",
                                      "2024-06-15", "2024-12-31")] == [1, 1, 2, 4, 18, 23, 48]
    with pytest.raises(UsageError, match="YYYY-MM-DD"):
        birdnet_week("10/05/2024")
    with pytest.raises(UsageError, match="calendar"):
        birdnet_week("2024-13-01")


def test_birds_only_drops_non_species_classes(birdnet_labels, taxonomy_file):
    location = LocationFilter(birdnet_labels, read_taxonomy(taxonomy_file), birds_only=True)
    everywhere = location.mask(None)
    by_label = dict(zip(birdnet_labels, everywhere))
    assert not by_label["Engine_Engine"] and not by_label["Dog_Dog"] and not by_label["Human vocal_Human vocal"]
    assert by_label["Turdus migratorius_American Robin"]
    assert 0.7 * len(birdnet_labels) < everywhere.sum() < len(birdnet_labels)  # frogs, insects too are out
    at_place = location.mask(PLACES[0])
    assert not (at_place & ~everywhere).any()  # a place only removes more
    with pytest.raises(UsageError, match="taxonomy"):
        LocationFilter(birdnet_labels, None, birds_only=True)


def test_unmatched_labels_kept_and_counted(taxonomy_file, xc10_species):
    # a real eBird bird BirdNET has no label for, a code no taxonomy knows, and two xc10 species
    taxonomy = read_taxonomy(taxonomy_file)
    birdnet_names = {label.split("_", 1)[0].lower() for label in BirdNET().labels}
    absent_bird = next(codes[0] for name, codes in sorted(taxonomy.items()) if name not in birdnet_names)
    species = ["caltow", absent_bird, "zzzfake1", "houspa"]
    masks, lines = file_masks(["a.ogg"], species, LocationOptions(lat=-33.9, lon=151.2, week=40,
                                                                   taxonomy=str(taxonomy_file)))
    mask = np.asarray(masks["a.ogg"])
    assert mask[1] and mask[2]  # unknown to the location model: kept
    assert not mask[0]  # California Towhee is not expected in Sydney
    assert lines[-1].startswith("2 of 4 labels could not be matched by scientific name (2 kept")
    assert absent_bird in lines[-1] and "zzzfake1" in lines[-1]
