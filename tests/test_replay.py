"""A lab replayed from its record shows what the run that wrote it showed (``labkit.records``, replay).

Each lab is executed twice in the ``smoke`` profile, into a temporary results folder: once computing
(``LABKIT_REPLAY=never``: trains or loads from the cache, attacks, writes ``results/smoke/<lab>.json``), once
replaying that record (``LABKIT_REPLAY=only``) with a cache that holds only the decoded dataset, as on a fresh
machine: afterwards it must still hold no model and no attack record (a replay that trained, attacked or loaded
one would have left it there). Every code cell's rendered outputs (tables as
HTML, printed text (consecutive stream chunks joined: where the kernel splits them depends on timing), figures as
PNG bytes, the generated verdicts) must be identical, except the line that says
where the page's numbers come from; progress bars (stderr, tqdm widgets) only exist while computing and are
left out, as are widget views (their ids are random; the book test checks they render).

Run one lab by hand: ``python -m pytest tests/test_replay.py -k 05 -p no:cacheprovider -o addopts=""``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tools.build_book import ipc_kernel_manager_classes

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
LABS = sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9]*.ipynb"))
PROVENANCE = "Numbers of this page:"  # rec.describe(): "recorded in" vs "replayed from"
WIDGET = "application/vnd.jupyter.widget-view+json"


def execute(lab: str, out: Path) -> nbformat.NotebookNode:
    """Run ``notebooks/<lab>.ipynb`` as the book build does (papermill, IPC kernel) and return the executed copy."""
    import papermill

    source = REPO_ROOT / "notebooks" / f"{lab}.ipynb"
    papermill.execute_notebook(str(source), str(out), kernel_name="python3", cwd=str(source.parent),
                               progress_bar=False, kernel_manager_class=ipc_kernel_manager_classes()[1])
    return nbformat.read(out, as_version=4)


def rendered(nb: nbformat.NotebookNode) -> list[list[Any]]:
    """What each code cell shows a reader, normalised as described in the module docstring."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        shown = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stdout":
                lines = [line for line in out.text.splitlines() if not line.startswith(PROVENANCE)]
                if shown and isinstance(shown[-1], list):  # the kernel splits printed text by timing: one stream
                    shown[-1].extend(lines)
                else:
                    shown.append(lines)
            elif out.output_type in ("display_data", "execute_result") and WIDGET not in out.data:
                shown.append({mime: value for mime, value in out.data.items()})
            elif out.output_type == "error":
                shown.append(f"{out.ename}: {out.evalue}")
        cells.append(shown)
    return cells


@pytest.mark.parametrize("lab", LABS)
def test_a_replayed_lab_renders_what_its_run_rendered(lab: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LABKIT_PROFILE", "smoke")
    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("LABKIT_REPLAY", "never")
    computed = rendered(execute(lab, tmp_path / "computed.ipynb"))
    record = json.loads((tmp_path / "results" / "smoke" / f"{lab}.json").read_text())
    monkeypatch.setenv("LABKIT_REPLAY", "only")
    fresh = tmp_path / "fresh-cache"  # a machine with the dataset decoded and nothing else
    fresh.mkdir()
    data = Path(os.environ.get("LABKIT_CACHE") or Path.home() / ".cache" / "labkit") / "data"
    if data.is_dir():
        (fresh / "data").symlink_to(data)
    monkeypatch.setenv("LABKIT_CACHE", str(fresh))
    replayed_nb = execute(lab, tmp_path / "replayed.ipynb")
    loaded = sorted(str(p.relative_to(fresh)) for p in fresh.iterdir() if p.name != "data")
    assert not loaded, f"{lab}: the replay trained, attacked or looked up the cache: {loaded}"
    replayed = rendered(replayed_nb)
    said = "".join(o.get("text", "") for c in replayed_nb.cells for o in c.get("outputs", []))
    assert f"replayed from results/smoke/{lab}.json" in said  # the page says where its numbers come from
    assert json.loads((tmp_path / "results" / "smoke" / f"{lab}.json").read_text()) == record  # never rewritten
    assert len(computed) == len(replayed)
    for i, (a, b) in enumerate(zip(computed, replayed)):
        assert a == b, f"{lab}: code cell {i} shows something else when replayed"
