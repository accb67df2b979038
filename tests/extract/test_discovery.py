"""Discovery follows symlinked folders, survives symlink loops, and reports what it cannot
read (never silently skips it), with real links and real permissions."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import pytest

from birdemb.extract.discovery import CorpusWarning, Problem, discover
from tests.helpers.audio import write_audio
from tests.helpers.paths import REPOSITORY

TOY = "tests.helpers.toy_backbone:ToyBackbone"


def linked_corpus(tmp_path):
    """amerob/ real, norcar/ a link to a folder outside the corpus, a file linked in."""
    audio, elsewhere = tmp_path / "train_audio", tmp_path / "elsewhere"
    write_audio(audio / "amerob" / "XC1.wav", 6.0, 16000, seed=1)
    write_audio(elsewhere / "norcar_clips" / "XC2.wav", 6.0, 16000, seed=2, freq=1000)
    write_audio(elsewhere / "XC3.wav", 6.0, 16000, seed=3, freq=2000)
    (audio / "norcar").symlink_to(elsewhere / "norcar_clips", target_is_directory=True)
    (audio / "amerob" / "XC3.wav").symlink_to(elsewhere / "XC3.wav")
    return audio


def test_a_symlinked_species_folder_is_followed_and_named_by_the_link(tmp_path):
    audio = linked_corpus(tmp_path)
    problems: list[Problem] = []
    items = discover(audio, problems=problems)
    assert [(i.file, i.species) for i in items] == [
        ("amerob/XC1.wav", "amerob"), ("amerob/XC3.wav", "amerob"), ("norcar/XC2.wav", "norcar")]
    assert problems == []


def test_a_symlink_loop_is_reported_once_and_does_not_hang(tmp_path):
    audio = linked_corpus(tmp_path)
    (audio / "amerob" / "again").symlink_to(audio, target_is_directory=True)  # back to the root
    (audio / "norcar" / "itself").symlink_to(".", target_is_directory=True)  # inside the linked folder
    found: dict = {}
    walker = threading.Thread(target=lambda: found.update(items=discover(audio, problems=found.setdefault("p", []))),
                              daemon=True)
    walker.start()
    walker.join(20)
    assert not walker.is_alive(), "discovery hangs on a symlink loop"
    assert [i.file for i in found["items"]] == ["amerob/XC1.wav", "amerob/XC3.wav", "norcar/XC2.wav"]
    assert sorted((os.path.relpath(p.path, audio), p.reason.split(" back")[0]) for p in found["p"]) == [
        ("amerob/again", "symbolic link loop"), ("norcar/itself", "symbolic link loop")]


def test_a_broken_link_is_a_warning_by_default(tmp_path):
    audio = linked_corpus(tmp_path)
    (audio / "houspa").symlink_to(tmp_path / "moved_away", target_is_directory=True)
    with pytest.warns(CorpusWarning, match=r"houspa: broken symbolic link"):
        items = discover(audio)
    assert len(items) == 3


# ---------------------------------------------------------------- real permissions

LIST = "import json, sys; from birdemb.extract.discovery import find_audio; from pathlib import Path; " \
       "paths, problems = find_audio(Path(sys.argv[1])); " \
       "print(json.dumps([[str(p) for p in paths], [[p.path, p.reason] for p in problems]]))"


def without_root_rights(argv: list[str]) -> list[str]:
    """The command as it runs for a normal user: root reads anything, so as root it runs
    without the capabilities that bypass file permissions."""
    if os.geteuid() != 0:
        return argv
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: no way to make a folder unreadable")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *argv]


@pytest.fixture()
def locked_corpus(tmp_path):
    audio = linked_corpus(tmp_path)
    write_audio(audio / "locked" / "XC4.wav", 6.0, 16000, seed=4)
    write_audio(audio / "amerob" / "XC5.wav", 6.0, 16000, seed=5)
    (audio / "amerob" / "XC5.wav").chmod(0o000)
    (audio / "locked").chmod(0o000)
    probe = subprocess.run(without_root_rights(["ls", str(audio / "locked")]), capture_output=True)
    if probe.returncode == 0:
        pytest.skip("permissions are not enforced here")
    yield audio
    (audio / "locked").chmod(0o755)


def test_an_unreadable_folder_and_file_are_reported_as_permission_denied(locked_corpus):
    result = subprocess.run(without_root_rights([sys.executable, "-c", LIST, str(locked_corpus)]), cwd=REPOSITORY,
                            capture_output=True, text=True, check=True)
    paths, problems = json.loads(result.stdout)
    assert [os.path.relpath(p, locked_corpus) for p in paths] == ["amerob/XC1.wav", "amerob/XC3.wav",
                                                                  "norcar/XC2.wav"]
    assert [(os.path.relpath(p, locked_corpus), reason) for p, reason in problems] == [
        ("amerob/XC5.wav", "permission denied"), ("locked", "permission denied (folder not searched)")]


def test_extract_prints_each_unreadable_path_and_counts_them(locked_corpus, tmp_path):
    root = tmp_path / "store"
    argv = [sys.executable, "-m", "birdemb", "extract", "--model", TOY, "--audio", str(locked_corpus), "--store",
            str(root), "--dataset", "train", "--workers", "1", "--quiet"]
    result = subprocess.run(without_root_rights(argv), cwd=REPOSITORY, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("birdemb extract: warning:")]
    assert warnings == [f"birdemb extract: warning: {locked_corpus / 'amerob' / 'XC5.wav'}: permission denied",
                        f"birdemb extract: warning: {locked_corpus / 'locked'}: permission denied (folder not searched)"]
    assert result.stdout.splitlines()[0].startswith("3 files stored, 0 failed")
    assert "2 folders or files could not be read and were left out" in result.stdout
