"""The notebooks in docs/notebooks run top to bottom, so they cannot rot.

They explore BirdNET over the real xc10 corpus where it is present, else a generated store
(birdemb.explore.sample_store.notebook_store decides; both are exercised, the second by forcing it).
The kernel is this test's own interpreter: a kernelspec written to a temporary JUPYTER_PATH,
which takes precedence over any user-level `python3` kernel pointing at another Python, and
needs no manual `ipykernel install` in a fresh venv.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers.paths import REPOSITORY

NOTEBOOKS = REPOSITORY / "docs" / "notebooks"
TIMEOUT_S = 300  # per cell; each notebook takes well under a minute here


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """JUPYTER_PATH holding a `python3` kernelspec that runs sys.executable."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (birdemb tests)", "language": "python",
    }))
    return {"JUPYTER_PATH": str(root), "store": tmp_path_factory.mktemp("notebook-store")}


def execute(name: str, monkeypatch, env: dict, out: Path) -> nbformat.NotebookNode:
    monkeypatch.setenv("JUPYTER_PATH", env["JUPYTER_PATH"])
    monkeypatch.setenv("BIRDEMB_NOTEBOOK_STORE", str(env["store"]))  # the second notebook reuses the first's store
    monkeypatch.setenv("BIRDEMB_NOTEBOOK_OUT", str(out))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, kernel_name="python3", timeout=TIMEOUT_S,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return notebook


def images(notebook) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []))


@pytest.mark.parametrize("name, figures", [("pacmap.ipynb", 3), ("eda.ipynb", 4)])
def test_notebook_runs_top_to_bottom(name, figures, kernel_env, monkeypatch, tmp_path):
    notebook = execute(name, monkeypatch, kernel_env, tmp_path)
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert images(notebook) >= figures
    assert all(p.stat().st_size > 0 for p in tmp_path.rglob("*.png"))


def test_eda_notebook_runs_on_the_generated_store(kernel_env, monkeypatch, tmp_path):
    # Where xc10 is present the test above used it; force the fallback so it is exercised too.
    monkeypatch.setenv("BIRDEMB_XC10", str(tmp_path / "absent"))
    env = dict(kernel_env, store=tmp_path / "store")
    notebook = execute("eda.ipynb", monkeypatch, env, tmp_path / "out")
    assert "generated sample store" in "".join(o.get("text", "") for o in notebook.cells[1].outputs)
    assert images(notebook) >= 4
