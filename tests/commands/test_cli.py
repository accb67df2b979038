"""The command layer words the core's option names as flags; the core's own messages name
options as Python does, so they read right from Python too."""
from __future__ import annotations

import argparse

import pytest

from birdemb.cli import build_parser, main, word_flags
from birdemb.training.config import DataOptions, FitOptions, TrainConfig
from birdemb.training.fit import check


def command(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def test_core_option_names_become_the_commands_flags():
    train_head = command("train-head")
    message = "`init=surrogate` needs a linear head; use `hidden=0` (or another `val_fraction`, `no_such`)"
    assert word_flags(message, train_head) == (
        "--init surrogate needs a linear head; use --hidden 0 (or another --val-fraction, no_such)")
    assert word_flags("give `species_list` or `metadata`", train_head) == "give --species-list or --metadata"


def test_a_core_error_reads_in_python_words_and_in_flags_on_the_command_line(tmp_path, capsys):
    config = TrainConfig(DataOptions("store", "encodec", "vocalization"), fit=FitOptions(init="surrogate"))
    with pytest.raises(Exception, match="`init=surrogate` needs the embedding model to be the surrogate"):
        check(config)
    code = main(["train-head", "--store", str(tmp_path), "--embeddings", "encodec", "--surrogate", "vocalization",
                 "--labels", "pseudo", "--loss", "bce", "--init", "surrogate", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("birdemb train-head: error: --init surrogate needs the embedding model to be the "
                                 "surrogate (got --embeddings encodec, --surrogate vocalization)")


def test_labels_lists_only_the_options_it_uses():
    flags = {flag for action in command("labels")._actions for flag in action.option_strings}
    assert {"--call-rule", "--annotations", "--threshold", "--secondary"} <= flags
    assert not flags & {"--val-fraction", "--folds", "--seed"}  # statistics of every window: no split


def test_output_piped_into_head_ends_quietly():
    """`birdemb ... | head -1`: the reader closes the pipe early; no BrokenPipeError traceback."""
    import subprocess
    import sys

    command = f"{sys.executable} -m birdemb species-list --lat 42.44 --lon -76.5 --week 20 | head -1"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert len(result.stdout.splitlines()) == 1 and "\t" in result.stdout
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_starting_a_command_loads_no_heavy_library():
    """Every command registers at start-up; none may pull in plotting or deep-learning stacks
    then (matplotlib alone added 1 s to `birdemb extract`, and to each of its workers' parent)."""
    import subprocess
    import sys

    code = ("import sys\nfrom birdemb.cli import main\ntry:\n    main(['extract', '--help'])\nexcept SystemExit:\n"
            "    pass\nheavy = ('matplotlib', 'torch', 'tensorflow', 'lightning', 'sklearn', 'streamlit', 'pacmap')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr.strip().splitlines()[-1] == "[]"
