"""Folder-name conventions of BirdNET-Analyzer's trainer: multi-label, negatives, non-event classes."""
import time

import numpy as np
import pytest

from birdemb.errors import BirdembError
from birdemb.labels.folders import NON_EVENT, FolderError, FolderLabel, folder_matrices, folder_species, parse_folder


def test_parse_folder_rules():
    assert parse_folder(None) is None
    assert parse_folder("amerob") == FolderLabel(("amerob",), (), False)
    assert parse_folder("amerob,norcar") == FolderLabel(("amerob", "norcar"), (), False)
    assert parse_folder("-blujay") == FolderLabel((), ("blujay",), False)
    assert parse_folder(" norcar , -blujay ,, ") == FolderLabel(("norcar",), ("blujay",), False)
    assert parse_folder("amerob,amerob") == FolderLabel(("amerob",), (), False)
    assert parse_folder("- blujay") == FolderLabel((), ("blujay",), False)


@pytest.mark.parametrize("name", [*NON_EVENT, "Noise", "BACKGROUND", "-noise", " Silence ", "-Other"])
def test_non_event_classes_are_never_species(name):
    assert parse_folder(name) == FolderLabel((), (), True)


def test_non_event_beside_species():
    assert parse_folder("noise,-amerob") == FolderLabel((), ("amerob",), True)


def test_empty_names_have_no_label():
    assert parse_folder("") is None
    assert parse_folder(" , ") is None


def test_a_species_both_positive_and_negative_is_an_error():
    with pytest.raises(FolderError, match=r"'amerob,-amerob'.*amerob is both"):
        parse_folder("amerob,-amerob")
    assert issubclass(FolderError, BirdembError)


def test_folder_species():
    assert folder_species(["amerob", "amerob,norcar", "-blujay", "Noise", None]) == ["amerob", "norcar"]
    assert folder_species([None, "", "background"]) == []
    assert folder_species(np.array(["b", "a", "a,c"], dtype=object)) == ["a", "b", "c"]


def test_folder_matrices():
    species = ["amerob", "blujay", "norcar"]
    values = ["amerob", "amerob,norcar", "-blujay", "Noise", None, "norcar,-amerob,houspa", "", "-silence"]
    positive, negative, non_event = folder_matrices(values, species)
    assert positive.dtype == negative.dtype == non_event.dtype == np.bool_
    assert positive.astype(int).tolist() == [[1, 0, 0], [1, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1],
                                             [0, 0, 0], [0, 0, 0]]
    assert negative.astype(int).tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0], [1, 0, 0],
                                             [0, 0, 0], [0, 0, 0]]
    assert non_event.tolist() == [False, False, False, True, False, False, False, True]


def test_folder_matrices_empty_and_matches_a_loop():
    positive, negative, non_event = folder_matrices([], ["a"])
    assert positive.shape == negative.shape == (0, 1) and non_event.shape == (0,)
    rng = np.random.default_rng(0)
    names = ["a", "b", "a,b", "-a", "b,-a", "noise", None, "c", "-c,a"]
    values = [names[i] for i in rng.integers(len(names), size=500)]
    species = ["a", "b", "c"]
    positive, negative, non_event = folder_matrices(values, species)
    for i, value in enumerate(values):
        label = parse_folder(value)
        assert positive[i].tolist() == [bool(label) and s in label.positives for s in species]
        assert negative[i].tolist() == [bool(label) and s in label.negatives for s in species]
        assert non_event[i] == (label is not None and label.non_event)


def test_folder_matrices_is_fast_for_a_million_rows():
    values = ["amerob", "amerob,norcar", "-blujay", "Noise", None] * 200_000
    started = time.perf_counter()
    positive, negative, non_event = folder_matrices(values, ["amerob", "blujay", "norcar"])
    assert time.perf_counter() - started < 10
    assert positive.sum() == 600_000 and negative.sum() == 200_000 and non_event.sum() == 200_000
