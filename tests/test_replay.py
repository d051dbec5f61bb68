"""A lab replayed from its record shows what the run that wrote it showed (``labkit.records``, replay).

Each lab is executed twice in the ``smoke`` profile: once computing (``LABKIT_REPLAY=never``: trains or loads from
the cache, attacks, writes ``results/smoke/<lab>.json`` into a private results folder), once replaying that record
(``LABKIT_REPLAY=only``) with a cache that holds only the decoded dataset, as on a fresh machine: afterwards it must
still hold no model and no attack record (a replay that trained, attacked or loaded one would have left it there).
Every code cell's rendered outputs (tables as HTML, printed text (consecutive stream chunks joined: where the kernel
splits them depends on timing), figures as PNG bytes, the generated verdicts) must be identical, except the line
that says where the page's numbers come from; progress bars (stderr, tqdm widgets) only exist while computing and
are left out, as are widget views (their ids are random; the book test checks they render).

The compute pass is nbval's run of the lab when the same session ran it (CI: ``make test`` runs ``notebooks/`` under
nbval, so each lab executes once per CI run, issue #24). The repository's ``conftest.py`` starts nbval's kernel of
a lab as this test's kernels start (inline figures, a results folder of its own), rebuilds its outputs with
nbclient, papermill's client, and saves the executed copy; this module's tests run after every notebook. The copy
stands in for a papermill run only if nbval ran every cell of the lab, with ``LABKIT_PROFILE=smoke`` and
``LABKIT_REPLAY=never``; otherwise this test computes with papermill itself (a warning says why when a copy was
there), and fails at once if nbval's run of the lab failed. The selected labs' passes start together at the first
replay test, ``JOBS`` labs at a time in worker processes, each kernel on one thread (the ``passes`` fixture).

Run one lab by hand (computes with papermill): ``python -m pytest tests/test_replay.py -k 05 -p no:cacheprovider
-o addopts=""``; with nbval's run as the compute pass: ``LABKIT_REPLAY=never python -m pytest
notebooks/05_apr.ipynb tests/test_replay.py -k 05``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from tools.build_book import ipc_kernel_manager_classes

REPO_ROOT = Path(__file__).resolve().parents[1]
LABS = sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("[0-9]*.ipynb"))
PROVENANCE = "Numbers of this page:"  # rec.describe(): "recorded in" vs "replayed from"
WIDGET = "application/vnd.jupyter.widget-view+json"
INLINE = "module://matplotlib_inline.backend_inline"  # the kernels' figures, as in the book (conftest.py: the same)


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
        shown: list[Any] = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stdout":
                if shown and isinstance(shown[-1], list):  # the kernel splits printed text by timing, even mid-line
                    shown[-1][0] += out.text
                else:
                    shown.append([out.text])
            elif out.output_type in ("display_data", "execute_result") and WIDGET not in out.data:
                shown.append({mime: value for mime, value in out.data.items()})
            elif out.output_type == "error":
                shown.append(f"{out.ename}: {out.evalue}")
        cells.append([[line for line in s[0].splitlines() if not line.startswith(PROVENANCE)]
                      if isinstance(s, list) else s for s in shown])
    return cells


def nbval_run(lab: str, runs: Path) -> tuple[nbformat.NotebookNode, Path] | None:
    """nbval's executed copy of ``lab`` and its results folder, if this session's nbval run can be the compute pass.

    None when nbval did not run the lab in full (run alone, deselected cells) or ran it otherwise than the compute
    pass would (profile, replay mode, plotting backend: a warning says so); a failure when nbval's run failed.
    """
    copy = runs / f"{lab}.ipynb"
    if not copy.is_file():
        return None
    nb = nbformat.read(copy, as_version=4)
    meta = nb.metadata["labkit_nbval"]
    if meta["failed_cell"] is not None:
        pytest.fail(f"nbval's run of notebooks/{lab}.ipynb failed at Cell {meta['failed_cell']} (see that test)")
    env = meta["env"]
    ran = {"LABKIT_PROFILE": env["LABKIT_PROFILE"] or "smoke", "LABKIT_REPLAY": env["LABKIT_REPLAY"],
           "MPLBACKEND": env["MPLBACKEND"]}
    wanted = {"LABKIT_PROFILE": "smoke", "LABKIT_REPLAY": "never", "MPLBACKEND": INLINE}
    if not meta["complete"]:
        return None
    if ran != wanted:
        warnings.warn(f"{lab}: nbval ran it with {ran}, the compute pass needs {wanted}: computing it again")
        return None
    return nb, Path(env["LABKIT_RESULTS"])


def cache_of(env: str | None) -> Path:
    """The cache folder ``LABKIT_CACHE=env`` names (labkit.cache.cache_root's rule)."""
    return Path(env).expanduser() if env else Path.home() / ".cache" / "labkit"


#: Labs whose passes run at once, each kernel on one thread (two multi-thread torch jobs on two cores slow each
#: other down ~20x); a replay mostly draws figures, so two at a time take about half as long.
JOBS = 2


@dataclass
class Passes:
    """A lab's two passes: where its executed copies and record went, and the replay's cache."""

    work: Path  # results/ (the record), computed.ipynb (unless nbval's copy is the compute pass), record.json (the
    #             record as the compute pass left it), replayed.ipynb
    computed: nbformat.NotebookNode | None  # nbval's executed copy, or None: the worker computes with papermill
    fresh: Path  # the replay's cache: the decoded dataset and nothing else, as on a fresh machine


def _run_passes(lab: str, work: Path, env: dict[str, str], compute: bool) -> None:
    """In a worker process: the compute pass with papermill (``compute``; else nbval's run was it), then the
    replay with ``LABKIT_REPLAY=only`` and the fresh cache; ``env``: the kernels' environment for both."""
    os.environ.update(env)
    if compute:
        os.environ["LABKIT_REPLAY"] = "never"
        execute(lab, work / "computed.ipynb")
    shutil.copy(work / "results" / "smoke" / f"{lab}.json", work / "record.json")
    os.environ.update(LABKIT_REPLAY="only", LABKIT_CACHE=str(work / "fresh-cache"))
    execute(lab, work / "replayed.ipynb")


def _selected_labs(session: pytest.Session) -> list[str]:
    return [item.callspec.params["lab"] for item in session.items
            if getattr(item, "originalname", "") == "test_a_replayed_lab_renders_what_its_run_rendered"]


@pytest.fixture(scope="session")
def passes(request: pytest.FixtureRequest, nbval_runs: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Passes, Future | str]]]:
    """Every selected lab's passes, ``JOBS`` labs at a time in worker processes, started at the first replay test:
    lab -> (its ``Passes``, the worker's future, or the reason nbval's run of it failed)."""
    labs = _selected_labs(request.session)
    together = min(JOBS, len(labs))
    out: dict[str, tuple[Passes, Future | str]] = {}
    with ProcessPoolExecutor(max(1, together), mp_context=multiprocessing.get_context("spawn")) as pool:
        for lab in labs:
            work = tmp_path_factory.mktemp(f"replay-{lab}")
            try:
                done = nbval_run(lab, nbval_runs)
            except pytest.fail.Exception as failed:  # that lab's test fails with it, not every lab's
                out[lab] = Passes(work, None, work), str(failed)
                continue
            if done is not None:
                shutil.copytree(done[1], work / "results")
                cache = cache_of(done[0].metadata["labkit_nbval"]["env"]["LABKIT_CACHE"])
            else:
                cache = cache_of(os.environ.get("LABKIT_CACHE"))
            fresh = work / "fresh-cache"
            fresh.mkdir()
            if (cache / "data").is_dir():
                (fresh / "data").symlink_to(cache / "data")
            env = {"LABKIT_PROFILE": "smoke", "LABKIT_RESULTS": str(work / "results"), "MPLBACKEND": INLINE,
                   "LABKIT_CACHE": str(cache), **({"OMP_NUM_THREADS": "1"} if together > 1 else {})}
            out[lab] = (Passes(work, done[0] if done else None, fresh),
                        pool.submit(_run_passes, lab, work, env, done is None))
        yield out


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_a_replayed_lab_renders_what_its_run_rendered(lab: str, passes: dict[str, tuple[Passes, Future | str]]):
    run, job = passes[lab]
    if isinstance(job, str):
        pytest.fail(job, pytrace=False)
    job.result()  # the worker's exception, if a pass failed
    computed_nb = run.computed or nbformat.read(run.work / "computed.ipynb", as_version=4)
    replayed_nb = nbformat.read(run.work / "replayed.ipynb", as_version=4)
    record = json.loads((run.work / "record.json").read_text())
    loaded = sorted(str(p.relative_to(run.fresh)) for p in run.fresh.iterdir() if p.name != "data")
    assert not loaded, f"{lab}: the replay trained, attacked or looked up the cache: {loaded}"
    said = "".join(o.get("text", "") for c in replayed_nb.cells for o in c.get("outputs", []))
    assert f"replayed from results/smoke/{lab}.json" in said  # the page says where its numbers come from
    assert json.loads((run.work / "results" / "smoke" / f"{lab}.json").read_text()) == record  # never rewritten
    computed, replayed = rendered(computed_nb), rendered(replayed_nb)
    assert len(computed) == len(replayed)
    for i, (a, b) in enumerate(zip(computed, replayed)):
        assert a == b, f"{lab}: code cell {i} shows something else when replayed"


def _notebook(*cells: list[dict[str, Any]]) -> nbformat.NotebookNode:
    """A notebook of code cells with the given outputs (nbformat dicts)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("pass", outputs=[nbformat.from_dict(o) for o in outs]) for outs in cells]
    return nb


def _stdout(text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": "stdout", "text": text}


def _shown(data: dict[str, Any]) -> dict[str, Any]:
    return {"output_type": "display_data", "data": data, "metadata": {}}


TABLE = _shown({"text/html": "<table><td>0.41</td></table>", "text/plain": "0.41"})
FIGURE = _shown({"image/png": "iVBORw0KGgoAAAA", "text/plain": "<Figure>"})
RUN = [_stdout("clean accuracy 0.93\n"), TABLE, FIGURE]


def test_rendering_leaves_out_what_only_a_computing_run_shows():
    computed = _notebook(
        [_stdout("Numbers of this page: profile smoke; recorded in results/smoke/x.json.\nclean acc"),
         {"output_type": "stream", "name": "stderr", "text": "epoch 1/2 ...\n"}, _stdout("uracy 0.93\n"),
         _shown({WIDGET: {"model_id": "a1"}, "text/plain": "0%"}), TABLE, FIGURE])
    replayed = _notebook(
        [_stdout("Numbers of this page: profile smoke; replayed from results/smoke/x.json.\n"), *RUN])
    assert rendered(computed) == rendered(replayed)


@pytest.mark.parametrize("change", [
    lambda run: [_stdout("clean accuracy 0.94\n"), *run[1:]],  # a printed number
    lambda run: [run[0], _shown({"text/html": "<table><td>0.42</td></table>", "text/plain": "0.41"}), run[2]],
    lambda run: [*run[:2], _shown({"image/png": "iVBORw0KGgoAAAB", "text/plain": "<Figure>"})],  # the figure
    lambda run: run[:2],  # a figure missing
    lambda run: [*run, {"output_type": "error", "ename": "StaleRecord", "evalue": "x", "traceback": []}],
    lambda run: [run[0], run[2], run[1]],  # another order
], ids=["printed", "table", "figure", "missing", "error", "order"])
def test_rendering_tells_a_replay_that_shows_something_else(change):
    assert rendered(_notebook(RUN, RUN)) != rendered(_notebook(RUN, change(RUN)))


#: A lab-like notebook without torch: the outputs a lab shows while computing (interleaved prints and displays,
#: stderr, an Output widget that clears and redraws, an updated display), and a cell that proves the kernel's
#: environment. Executed by nbval and by papermill, its copies must render alike.
TINY = [
    "import os, sys\nfrom pathlib import Path\nfrom IPython.display import HTML, display\nimport ipywidgets as w",
    "print('before', end='')\nprint(' the table')\ndisplay(HTML('<b>table</b>'))\nprint('after', file=sys.stderr)\n"
    "print('after the table')",
    "out = w.Output()\nwith out:\n    out.clear_output(wait=True)\n    print('inside the widget')\n"
    "    display(HTML('<i>panel</i>'))\ndisplay(out)\nprint('below the widget')",
    "handle = display(HTML('first'), display_id=True)\nhandle.update(HTML('second'))",
    "seen = Path(os.environ['LABKIT_RESULTS'])\nseen.mkdir(parents=True, exist_ok=True)\n"
    "(seen / 'backend').write_text(os.environ['MPLBACKEND'])\nHTML('<p>last</p>')",
]


def _run_nbval(notebooks: Path, runs_root: Path) -> str:
    """nbval over ``notebooks`` with this repository's conftest (loaded as a plugin: the folder is elsewhere);
    returns pytest's output."""
    import subprocess
    import sys

    env = {**os.environ, "LABKIT_PROFILE": "smoke", "LABKIT_REPLAY": "never", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-o", "addopts=",
                    "--nbval-lax", "--nbval-current-env", "-q", "--basetemp", str(runs_root), str(notebooks)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    return done.stdout + done.stderr


@pytest.mark.slow
def test_nbvals_executed_copy_renders_as_papermills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(src) for src in TINY]
    nbformat.write(nb, notebooks / "01_tiny.ipynb")
    broken = nbformat.v4.new_notebook(metadata=nb.metadata)
    broken.cells = [nbformat.v4.new_code_cell("print(1)"), nbformat.v4.new_code_cell("1 / 0"),
                    nbformat.v4.new_code_cell("print(2)")]
    nbformat.write(broken, notebooks / "02_broken.ipynb")
    said = _run_nbval(notebooks, tmp_path / "pytest")
    assert "1 failed, 7 passed" in said, said  # 02_broken's second cell
    runs = tmp_path / "pytest" / "nbval-runs0"

    monkeypatch.setenv("LABKIT_RESULTS", str(tmp_path / "papermill-results"))
    monkeypatch.setenv("MPLBACKEND", INLINE)
    import papermill

    papermill.execute_notebook(str(notebooks / "01_tiny.ipynb"), str(tmp_path / "papermill.ipynb"),
                               kernel_name="python3", cwd=str(notebooks), progress_bar=False,
                               kernel_manager_class=ipc_kernel_manager_classes()[1])
    by_papermill = nbformat.read(tmp_path / "papermill.ipynb", as_version=4)
    by_nbval, results = nbval_run("01_tiny", runs)
    assert rendered(by_nbval) == rendered(by_papermill)
    assert ["inside the widget"] not in rendered(by_nbval)[2]  # the Output widget kept what it captured
    assert (results / "backend").read_text() == INLINE  # the lab's kernel ran as this test's kernels run
    with pytest.raises(pytest.fail.Exception, match="02_broken.ipynb failed at Cell 1"):
        nbval_run("02_broken", runs)


def _saved_copy(runs: Path, complete: bool = True, failed_cell: int | None = None, **env: str | None) -> None:
    """An executed copy of lab ``05_x`` as conftest.py writes it (no outputs: only its metadata matters here)."""
    env = {"LABKIT_PROFILE": "smoke", "LABKIT_REPLAY": "never", "LABKIT_RESULTS": str(runs / "05_x" / "results"),
           "LABKIT_CACHE": None, "MPLBACKEND": INLINE, **env}
    nb = _notebook([])
    nb.metadata["labkit_nbval"] = {"complete": complete, "failed_cell": failed_cell, "env": env}
    nbformat.write(nb, runs / "05_x.ipynb")


def test_nbvals_full_smoke_run_is_the_compute_pass(tmp_path: Path):
    assert nbval_run("05_x", tmp_path) is None  # nbval did not run it
    _saved_copy(tmp_path, LABKIT_PROFILE=None)  # the notebook's default profile is smoke
    assert nbval_run("05_x", tmp_path)[1] == tmp_path / "05_x" / "results"


@pytest.mark.parametrize("saved", [{"complete": False}, {"LABKIT_PROFILE": "cpu"}, {"LABKIT_REPLAY": "auto"},
                                   {"MPLBACKEND": "Agg"}], ids=["partial", "profile", "replay", "backend"])
def test_another_nbval_run_is_not_the_compute_pass(saved: dict[str, Any], tmp_path: Path):
    _saved_copy(tmp_path, **saved)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert nbval_run("05_x", tmp_path) is None
