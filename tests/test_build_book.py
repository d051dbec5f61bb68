"""tools/build_book.py: two lab executions at once both finish, on IPC kernels, with no retry."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import nbformat
import pytest

from tools import build_book

CELLS = [
    ('profile = "smoke"', ["parameters"]),
    ("from tqdm.auto import tqdm\nimport time\nfor _ in tqdm(range(50)):\n    time.sleep(0.01)", []),
    ("print(sum(range(10)))", []),
]


def write_lab(root: Path, name: str, cells: list[tuple[str, list[str]]] = CELLS) -> Path:
    """A tiny lab (by default: parameters cell, a tqdm bar, a print) at root/notebooks/<name>; returns the
    relative path."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for source, tags in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    path = root / "notebooks" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path.relative_to(root)


def run_lab(root: str, notebook: str) -> tuple[str, str]:
    run = build_book.execute(Path(notebook), Path(root), Path(root) / "stage", "smoke", "cpu")
    executed = nbformat.read(Path(root) / "stage" / notebook, as_version=4)
    return run.status, executed.cells[-1].outputs[0]["text"]


def test_kernel_managers_use_ipc_and_distinct_sockets() -> None:
    sync_cls, async_cls = build_book.ipc_kernel_manager_classes()
    a, b = sync_cls(kernel_name="python3"), async_cls(kernel_name="python3")
    assert a.transport == b.transport == "ipc"
    assert a.connection_file != b.connection_file
    assert a.ip != b.ip  # the socket files are named after each kernel's own connection file


def test_async_client_rechecks_its_sockets() -> None:
    _, async_cls = build_book.ipc_kernel_manager_classes()
    client = async_cls(kernel_name="python3").client()
    for channel in (client.shell_channel_class, client.iopub_channel_class):
        assert channel.__name__ == "RecheckingChannel"


def test_nbval_kernels_use_ipc() -> None:
    import nbval.kernel

    assert nbval.kernel.KernelManager(kernel_name="python3").transport == "ipc"


@pytest.mark.slow
def test_two_concurrent_executions_finish(tmp_path: Path) -> None:
    labs = [str(write_lab(tmp_path, f"lab{i}.ipynb")) for i in range(2)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(run_lab, [(str(tmp_path), lab) for lab in labs], chunksize=1)
    assert results == [("ok", "45\n"), ("ok", "45\n")]


STALE_LAB = [
    ('profile = "smoke"', ["parameters"]),
    ("import os\n\nclass StaleRecord(RuntimeError):\n    pass\n\n"
     "if os.environ['LABKIT_REPLAY'] != 'never':\n    raise StaleRecord('results/smoke/x.json is stale')", []),
    ("print('Numbers of this page: ...; recorded in results/smoke/x.json. Recompute: ...')", []),
]


def test_a_stale_record_recomputes_in_auto_and_fails_with_replay_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LABKIT_REPLAY", "auto")  # execute_lab sets it for the kernels and puts it back
    notebook = write_lab(tmp_path, "x.ipynb", STALE_LAB)
    run = build_book.execute_lab(notebook, tmp_path, tmp_path / "stage", "smoke", "cpu", "auto")
    assert run.status == "ok" and run.numbers == "computed"  # executed again, computing
    with pytest.raises(build_book.NotebookFailed, match="StaleRecord: results/smoke/x.json is stale"):
        build_book.execute_lab(notebook, tmp_path, tmp_path / "stage", "smoke", "cpu", "only")
    assert build_book.os.environ["LABKIT_REPLAY"] == "only"  # what the build's next lab gets


THREADS_LAB = [('profile = "smoke"', ["parameters"]), ("import os\nprint(os.environ.get('OMP_NUM_THREADS'))", [])]


def test_labs_replayed_two_at_a_time_come_back_in_order_on_one_thread_each(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    labs = [write_lab(tmp_path, f"lab{i}.ipynb", THREADS_LAB) for i in range(3)]
    runs = list(build_book.execute_labs(labs, tmp_path, tmp_path / "stage", "smoke", "cpu", "only", jobs=2))
    assert [r.notebook for r in runs] == [str(lab) for lab in labs] and {r.status for r in runs} == {"ok"}
    for lab in labs:
        assert nbformat.read(tmp_path / "stage" / lab, as_version=4).cells[-1].outputs[0]["text"] == "1\n"
    assert "OMP_NUM_THREADS" not in build_book.os.environ  # put back for whatever the build runs next


def test_a_lab_failing_among_parallel_ones_fails_the_build_naming_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LABKIT_REPLAY", "only")
    labs = [write_lab(tmp_path, "ok.ipynb"), write_lab(tmp_path, "x.ipynb", STALE_LAB)]
    with pytest.raises(build_book.NotebookFailed, match="StaleRecord") as failure:
        list(build_book.execute_labs(labs, tmp_path, tmp_path / "stage", "smoke", "cpu", "only", jobs=2))
    assert failure.value.run.notebook == str(labs[1]) and failure.value.run.status == "failed"


def test_replay_flags() -> None:
    assert build_book.resolve_replay(build_book.parse_args(["--replay-only"])) == "only"
    assert build_book.resolve_replay(build_book.parse_args(["--recompute"])) == "never"
    with pytest.raises(SystemExit):
        build_book.parse_args(["--replay-only", "--recompute"])  # one or the other


def test_replay_names_are_labkits() -> None:
    from labkit import records  # the build script imports no torch, so it repeats these two names

    assert build_book.REPLAY_MODES == records.REPLAY_MODES and build_book.STALE == records.StaleRecord.__name__


# -- code drift: a replayed record made by other code ----------------------------------------------------------


def printing(text: str) -> nbformat.NotebookNode:
    """An executed notebook whose one cell printed ``text``."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(rec.describe())")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
    nb.cells.append(cell)
    return nb


def test_code_of_reads_what_a_replayed_record_says(tmp_path: Path, monkeypatch) -> None:
    # The lab's code: a record fingerprints the labkit modules imported, and records alone imports neither of these.
    import labkit.evaluate
    import labkit.stats
    from labkit import records
    from labkit.profiles import get_profile

    profile = get_profile("smoke")
    computing = records.LabRecord("99_x", profile, root=tmp_path, mode="never")
    computing.text("verdict", "x")
    assert build_book.code_of(printing(computing.describe())) == ""  # computed now: nothing to compare
    rec = records.LabRecord("99_x", profile, root=tmp_path, mode="only")
    assert build_book.code_of(printing(rec.describe())) == "unchanged"
    real = records._module_source
    monkeypatch.setattr(records, "_module_source",
                        lambda name: b"# edited\n" if name in ("labkit.evaluate", "labkit.stats") else real(name))
    nb = printing(rec.describe())
    assert build_book.code_of(nb) == "changed: evaluate, stats" and build_book.numbers_of(nb) == "replayed"
    old = records.LabRecord("05_apr", get_profile("cpu").for_defences(), root=records.project_root() / "results",
                            mode="only")  # a committed record, written before code fingerprints
    assert build_book.code_of(printing(old.describe())) == "not recorded"


def run_of(stem: str, code: str, numbers: str = "replayed") -> build_book.Run:
    return build_book.Run(f"notebooks/{stem}.ipynb", "cpu", "ok", 1.0, "2026-12-06 20:00", "cpu", "0" * 64,
                          numbers, code)


def test_drift_warnings_name_each_changed_lab_and_how_to_recompute_it() -> None:
    runs = [run_of("01_one", "unchanged"), run_of("05_apr", "changed: evaluate, attacks.onepixel"),
            run_of("06_abl", "not recorded"), run_of("07_new", "", "computed"), run_of("08_old", "not recorded")]
    warnings = build_book.drift_warnings(runs)
    assert len(warnings) == 2 and "05_apr" in warnings[0] and "evaluate, attacks.onepixel changed" in warnings[0]
    assert warnings[0].endswith("--profile cpu --recompute --only 05")
    assert "2 records predate code fingerprints" in warnings[1] and warnings[1].endswith("06_abl, 08_old")
    assert build_book.drift_warnings(runs[:1] + runs[3:4]) == []  # nothing to say when every record matches
    page = build_book.status_page(runs, build_book.REPO_ROOT)
    assert "| Code since record |" in page and "| replayed | changed: evaluate, attacks.onepixel |" in page
    assert "| replayed | not recorded |" in page and "| computed | - |" in page


def test_replay_only_warns_of_drift_and_still_builds(tmp_path: Path, monkeypatch, capsys) -> None:
    modes = []

    def fake_execute(notebook, root, stage, profile, device, replay):  # no kernel: the build's wiring is tested
        modes.append(replay)
        return run_of(notebook.stem, "changed: evaluate")

    monkeypatch.setattr(build_book, "toc_notebooks", lambda root: [Path("notebooks/05_apr.ipynb")])
    monkeypatch.setattr(build_book, "kernel_environment", lambda profile, replay: None)
    monkeypatch.setattr(build_book, "stage_sources", lambda root, stage: (stage / "book").mkdir(parents=True))
    monkeypatch.setattr(build_book, "execute_lab", fake_execute)
    monkeypatch.setattr(build_book, "build_html", lambda stage, out: (out / "html").mkdir(parents=True) or out / "html" / "index.html")
    assert build_book.main(["--replay-only", "--profile", "cpu", "--out", str(tmp_path)]) == 0
    assert modes == ["only"]
    said = capsys.readouterr().out
    assert "WARNING: 05_apr replays a record made by other code (evaluate changed since)" in said
    assert "changed: evaluate" in (tmp_path / "stage" / build_book.STATUS_PAGE).read_text()


def test_findings_box_each_lab_with_its_record_and_write_the_landing_pages_section(tmp_path: Path, monkeypatch) -> None:
    import json

    results = tmp_path / "results"
    (results / "cpu").mkdir(parents=True)
    row = {"attack": "DE k=1", "asr": 0.31, "asr_lo": 0.23, "asr_hi": 0.41, "attacked": 100}
    (results / "cpu" / "02_baselines.json").write_text(json.dumps({"lab": "02_baselines", "profile": "cpu",
                                                                   "tables": {"t": [row]}}))
    (results / "cpu" / "02_baselines.npz").write_bytes(b"arrays")
    monkeypatch.setenv("LABKIT_RESULTS", str(results))
    stage = tmp_path / "stage"
    (stage / "book").mkdir(parents=True)
    labs = [write_lab(stage, "02_baselines.ipynb", [("# Lab 02", [])]), write_lab(stage, "03_other.ipynb")]
    for _ in range(2):  # a second build (e.g. --only) replaces the box, never adds one
        build_book.add_findings(labs, stage, "cpu")
    nb = nbformat.read(stage / labs[0], as_version=4)
    boxes = [c for c in nb.cells if build_book.KEY_RESULT_TAG in c.metadata.get("tags", [])]
    assert len(boxes) == 1 and nb.cells[1] is boxes[0]  # right after the title
    text = boxes[0].source
    assert "DE k=1: 31% of 100 images fooled" in text
    for name in ("02_baselines.json", "02_baselines.npz"):
        assert f"<../{build_book.RECORDS_DIR}/{name}>" in text
        assert (stage / build_book.RECORDS_DIR / name).read_bytes() == (results / "cpu" / name).read_bytes()
    other = nbformat.read(stage / labs[1], as_version=4)  # no record: no box
    assert not any(build_book.KEY_RESULT_TAG in c.metadata.get("tags", []) for c in other.cells)
    findings_page = (stage / build_book.FINDINGS_PAGE).read_text(encoding="utf-8")
    assert findings_page.startswith("## What the book found")
    assert (stage / "book" / build_book.FINDINGS_FIGURE).is_file() == ("```{figure}" in findings_page)
