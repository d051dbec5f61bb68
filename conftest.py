"""Repository-wide pytest set-up.

nbval starts each notebook's kernel with jupyter_client's ``KernelManager`` over TCP; here it uses the
same IPC-socket manager as the book build, so a test run beside a build (or another test run) cannot
race it for ports. ``tools/build_book.py`` (``_ipc_kernel_manager``) says why that race breaks kernels.

nbval's run of a lab is also the compute pass of ``tests/test_replay.py``, so that CI executes each lab once
(issue #24). For every notebook nbval executes, this file keeps what papermill would have saved:

- Its kernel starts as the replay test's kernels do: the inline matplotlib backend (``REPLAY_KERNEL_ENV``, as in
  the book build) and, for a lab (``is_lab``), its own results folder ``<nbval_runs>/<lab>/results``
  (``LABKIT_RESULTS``), so its record is the one the replay test replays and the checkout's ``results/`` stays
  untouched. Other notebooks (the claims page) keep reading the committed records.
- Each cell's iopub messages, as nbval reads them, are fed to an nbclient ``NotebookClient``, the client papermill
  wraps: it handles ``clear_output``, display updates and Output widgets (which capture what is displayed inside
  them) as papermill does. nbval's own outputs cannot stand in: it merges every stream of a cell into one output
  and keeps what an Output widget captured as cell outputs.
- When the notebook's last cell has run, or a cell failed, the executed copy is written to
  ``<nbval_runs>/<notebook>.ipynb`` with ``metadata.labkit_nbval``: ``complete`` (every code cell ran and passed),
  ``failed_cell`` (nbval's number of the first cell that failed, or None) and ``env`` (the kernel's
  ``NBVAL_ENV_KEYS``).

Tests reach the folder through the session fixture ``nbval_runs``. The replay test is ordered after every notebook
(``pytest_collection_modifyitems``), whatever order the paths were given in.
"""

from __future__ import annotations

import os
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import nbval.kernel
import nbval.plugin
import pytest

from tools.build_book import ipc_kernel_manager_classes

nbval.kernel.KernelManager = ipc_kernel_manager_classes()[0]

#: What the kernels of the replay test's papermill runs (and the book build's) get: figures shown inline.
REPLAY_KERNEL_ENV = {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
#: The environment an executed copy records: what decides whether it can stand for the replay test's compute pass.
NBVAL_ENV_KEYS = ("LABKIT_PROFILE", "LABKIT_REPLAY", "LABKIT_RESULTS", "LABKIT_CACHE", "MPLBACKEND")
#: The test module that replays the labs nbval computed; it runs after the notebooks.
REPLAY_TEST = "test_replay.py"
_RUNS = pytest.StashKey[Path]()


def is_lab(notebook: Path) -> bool:
    """A lab notebook (``notebooks/<digit>*.ipynb``): the replay test's ``LABS``."""
    return notebook.parent.name == "notebooks" and notebook.name[:1].isdigit()


def runs_folder(config: pytest.Config) -> Path:
    """This session's folder of nbval's executed copies and lab records (created on first use)."""
    if _RUNS not in config.stash:
        factory = getattr(config, "_tmp_path_factory", None)  # pytest's basetemp: kept for a look after the run
        config.stash[_RUNS] = factory.mktemp("nbval-runs") if factory else Path(tempfile.mkdtemp(prefix="nbval-runs"))
    return config.stash[_RUNS]


@pytest.fixture(scope="session")
def nbval_runs(pytestconfig: pytest.Config) -> Path:
    """The folder of this session's nbval runs (module docstring): ``<notebook>.ipynb`` and ``<lab>/results/``."""
    return runs_folder(pytestconfig)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Stable: everything keeps its order, the replay test's items move behind the notebooks they reuse.
    items.sort(key=lambda item: item.path.name == REPLAY_TEST)


class _Capture:
    """One notebook's executed copy, built from nbval's kernel messages by nbclient's output handling."""

    def __init__(self, nbfile: nbval.plugin.IPyNbFile, env: dict[str, str | None]):
        from jupyter_client.session import Session
        from nbclient import NotebookClient

        self.path = runs_folder(nbfile.config) / nbfile.path.name
        self.nb = nbformat.read(nbfile.path, as_version=4)
        self.code = [i for i, cell in enumerate(self.nb.cells) if cell.cell_type == "code"]
        self.nb.metadata["labkit_nbval"] = {"complete": False, "failed_cell": None, "env": env}
        self.client = NotebookClient(self.nb, record_timing=False)
        # The Output-widget mimic syncs its state back to the kernel; nbval's kernel has no frontend to hear it.
        self.client.kc = types.SimpleNamespace(session=Session(), shell_channel=types.SimpleNamespace(send=_ignore))
        self.messages: list[dict[str, Any]] = []
        self.passed: set[int] = set()  # nbval's numbers of the code cells that ran and passed
        self.done = False

    def cell_ran(self, cell_num: int, outcome: str) -> None:
        """Turn the messages of nbval's code cell ``cell_num`` (its report's ``outcome``) into its outputs; write
        the copy after the notebook's last cell or its first failure."""
        from nbclient.exceptions import CellExecutionComplete

        messages, self.messages = self.messages, []
        if self.done:
            return
        index = self.code[cell_num]
        cell = self.nb.cells[index]
        cell.outputs = []
        self.client.clear_before_next_output = False  # as nbclient does before each cell
        request = next((m["parent_header"].get("msg_id") for m in messages if m["msg_type"] == "execute_input"), None)
        for msg in messages:
            if msg["parent_header"].get("msg_id") != request:
                continue
            try:
                self.client.process_message(msg, cell, index)
            except CellExecutionComplete:
                break
        if outcome == "passed":
            self.passed.add(cell_num)
        meta = self.nb.metadata["labkit_nbval"]
        if outcome == "failed":
            meta["failed_cell"] = cell_num
            self.finish()
        elif cell_num == len(self.code) - 1:  # a deselected or skipped cell leaves the copy incomplete
            meta["complete"] = len(self.passed) == len(self.code)
            self.finish()

    def finish(self) -> None:
        self.done = True
        nbformat.write(self.nb, self.path)


def _ignore(*_: object) -> None:
    return None


def _kernel_env(notebook: Path, config: pytest.Config) -> dict[str, str]:
    env = dict(REPLAY_KERNEL_ENV)
    if is_lab(notebook):
        env["LABKIT_RESULTS"] = str(runs_folder(config) / notebook.stem / "results")
    return env


_nbval_setup = nbval.plugin.IPyNbFile.setup
_nbval_message = nbval.plugin.IPyNbFile.get_kernel_message


def _setup(self: nbval.plugin.IPyNbFile) -> None:
    """nbval's kernel start, in the replay test's environment (``_kernel_env``), with a ``_Capture``."""
    changes = _kernel_env(self.path, self.config)
    saved = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        env = {key: os.environ.get(key) for key in NBVAL_ENV_KEYS}
        _nbval_setup(self)  # the kernel copies os.environ when it starts
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    self.labkit_capture = _Capture(self, env)


def _get_kernel_message(self: nbval.plugin.IPyNbFile, *args: Any, **kwargs: Any) -> dict[str, Any]:
    msg = _nbval_message(self, *args, **kwargs)
    capture = getattr(self, "labkit_capture", None)
    if capture is not None:
        capture.messages.append(msg)
    return msg


nbval.plugin.IPyNbFile.setup = _setup
nbval.plugin.IPyNbFile.get_kernel_message = _get_kernel_message


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    capture = getattr(item.parent, "labkit_capture", None)
    if not isinstance(item, nbval.plugin.IPyNbCell) or capture is None:
        return
    report = outcome.get_result()
    if call.when == "call" or (call.when == "setup" and not report.passed):  # a cell that never ran counts too
        capture.cell_ran(item.cell_num, report.outcome)
