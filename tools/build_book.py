#!/usr/bin/env python
"""Execute the labs and build the One-Pixel Lab book.

    python tools/build_book.py [--profile smoke|cpu|full] [--replay-only | --recompute] [--only 01 02] [--out _build]

Steps:

1. Stage: copy the book's sources (``_config.yml``, ``_toc.yml``, ``book/``, ``labkit/`` and the
   non-notebook files of ``notebooks/``) to ``<out>/stage/``. The tracked notebooks are never
   written to, so they stay output-free.
2. Execute, in ``_toc.yml`` order, every page of the table of contents that is a notebook under
   ``notebooks/``, with papermill (``-p profile <profile>``, kernel ``python3``) into
   ``<out>/stage/notebooks/``. The kernel's working directory is the *source* ``notebooks/``
   folder, as in JupyterLab and nbval, so the three ways of running a lab agree; a lab must not
   rely on files it writes next to itself (use ``LABKIT_CACHE``). Widget state is stored in the
   executed notebook so that sliders and tqdm bars render in the static HTML. Papermill's injected
   parameters cell is tagged ``remove-cell``.
3. Record each run (profile, status, wall time, date, device) in ``<out>/stage/execution.json`` and
   write the book's execution-status page from those records.
4. Results first (``labkit.findings``, from the profile's records ``results/<profile>/``): every executed lab
   page gets a "Key result" box after its title (a markdown cell tagged ``key-result``) with links to download
   its record (copied to ``<out>/stage/records/``); the landing page includes ``book/findings.md`` and its
   figure, written here from the same records.
5. Build the staged book with ``jupyter-book build -W --keep-going --all`` into ``<out>/html``
   (``index.html`` there).

Replay (``labkit.records``): a lab whose record ``results/<profile>/<lab>.json`` was made with the same profile
replays it (no training, no attack: the same tables, figures and verdicts). ``--replay-only`` makes a lab without
a replayable record fail with a message naming it; ``--recompute`` computes every lab and rewrites its record.
By default (``$LABKIT_REPLAY``, else ``auto``) a lab replays when it can and computes otherwise; a record found
stale in the middle of a lab (a model's cache key changed) makes the build execute that lab again, computing.
A record made by other labkit code than the current one (its code fingerprint, ``LabRecord.code_drift``) still
replays: the build warns, naming each such lab and the modules that changed, and the status page shows it.

The profile is ``--profile``, else ``$LABKIT_PROFILE``, else ``full`` when PyTorch sees a CUDA GPU
and ``cpu`` otherwise; the kernels also see it as ``LABKIT_PROFILE``. ``LABKIT_DATA`` and
``LABKIT_CACHE`` pass through to the kernels, made absolute (they run in ``notebooks/``).
``MPLBACKEND`` is set to the inline backend for them, whatever the caller exported (CI exports
``Agg``, which would keep figures out of the notebooks).

With ``--only``, the other labs keep their executed copy from an earlier build of the same
``--out`` (the status page says so, and flags it as stale if the source notebook changed since);
a lab never executed there is built without outputs and listed as "not executed".

A lab that fails stops everything: the message names the notebook and the failing cell, the
executed copy with the traceback stays in the stage, and the exit status is 1. A cell tagged
``raises-exception`` may raise, as in nbval and Jupyter Book.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import nbformat
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILES = ("smoke", "cpu", "full")
NOTEBOOK_DIR = "notebooks"
# What the staged book needs besides the executed notebooks. labkit/ is there so that pages can
# `literalinclude` the package's source instead of copying it.
STAGED_PATHS = ("_config.yml", "_toc.yml", "book", "labkit")
STATUS_PAGE = Path("book") / "execution_status.md"
# The landing page's generated results (included by book/intro.md) and their figure; the lab pages' key results.
FINDINGS_PAGE = Path("book") / "findings.md"
FINDINGS_FIGURE = "findings.png"
KEY_RESULT_TAG = "key-result"
RECORDS_DIR = "records"  # in the stage: the record files the lab pages link for download
RECORDS_FILE = "execution.json"
KERNEL = "python3"
# Tags that Jupyter Book and nbval understand; papermill's own names for its cells.
HIDE_TAG = "remove-cell"
MAY_RAISE_TAG = "raises-exception"
INJECTED_TAG = "injected-parameters"
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class BuildError(Exception):
    """A failure that ends the build with a message for the user and exit status 1."""


@dataclasses.dataclass
class Run:
    """One notebook's execution, as shown on the execution-status page."""

    notebook: str  # path relative to the repository root, e.g. notebooks/01_one_pixel_attack.ipynb
    profile: str  # the profile passed to papermill; "" if never executed
    status: str  # "ok", "failed", "not executed"
    wall_s: float | None  # kernel start to last cell, seconds
    finished: str  # UTC, ISO 8601 to the minute; "" if never executed
    device: str  # the machine's accelerator (or CPU) at execution time
    source_sha256: str  # of the source notebook that was executed, to spot stale copies
    numbers: str = ""  # "replayed" (from the lab's record), "computed", or "" if never executed
    # The replayed record's code against the current code: "unchanged", "changed: <modules>", "not recorded" (a
    # record older than code fingerprints), or "" (numbers computed, no record, never executed).
    code: str = ""


class NotebookFailed(BuildError):
    """A lab raised; carries its run record so that the failure is recorded too."""

    def __init__(self, run: Run, message: str) -> None:
        super().__init__(message)
        self.run = run


def log(message: str) -> None:
    """Print a progress line; flushed so that CI logs interleave correctly with papermill's."""
    print(f"[build_book] {message}", flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Execute the labs with papermill and build the book (warnings are errors).",
        epilog="Environment: LABKIT_PROFILE (default profile), LABKIT_REPLAY (auto, only, never), LABKIT_DATA, "
        "LABKIT_CACHE, LABKIT_RESULTS.",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        help="work size for every lab (default: $LABKIT_PROFILE, else full with CUDA, else cpu)",
    )
    replay = parser.add_mutually_exclusive_group()
    replay.add_argument(
        "--replay-only",
        action="store_true",
        help="every lab replays its committed record (results/<profile>/); a missing or stale one fails the build",
    )
    replay.add_argument(
        "--recompute",
        action="store_true",
        help="every lab computes (trains or loads from the cache, attacks) and rewrites its record",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="LAB",
        help="execute only these labs, by number or name prefix (e.g. 01 02_baselines)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="labs executed at once when every lab replays (--replay-only): each kernel then gets one thread "
        "(two multi-thread torch jobs on two cores slow each other down ~20x); computing labs run one at a time "
        "(a later lab reads an earlier one's models and records)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "_build",
        help="build directory: stage in OUT/stage, HTML in OUT/html (default: <repo>/_build)",
    )
    return parser.parse_args(argv)


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_profile(flag: str | None) -> str:
    """The flag, else LABKIT_PROFILE, else what the machine can afford."""
    profile = flag or os.environ.get("LABKIT_PROFILE") or ("full" if cuda_available() else "cpu")
    if profile not in PROFILES:
        raise BuildError(f"LABKIT_PROFILE={profile!r} is not one of {', '.join(PROFILES)}")
    return profile


REPLAY_MODES = ("auto", "only", "never")  # labkit.records.REPLAY_MODES (not imported: this script imports no torch)
#: The exception a lab raises when its record cannot be replayed (labkit.records.StaleRecord).
STALE = "StaleRecord"


def resolve_replay(args: argparse.Namespace) -> str:
    """``only`` with --replay-only, ``never`` with --recompute, else LABKIT_REPLAY, else ``auto``."""
    mode = "only" if args.replay_only else "never" if args.recompute else os.environ.get("LABKIT_REPLAY") or "auto"
    if mode not in REPLAY_MODES:
        raise BuildError(f"LABKIT_REPLAY={mode!r} is not one of {', '.join(REPLAY_MODES)}")
    return mode


def toc_files(node: Any) -> Iterator[str]:
    """Every `file:` entry of a _toc.yml tree (root included), in reading order."""
    if isinstance(node, dict):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                yield node[key]
        for value in node.values():
            if isinstance(value, (list, dict)):
                yield from toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from toc_files(item)


def toc_notebooks(root: Path) -> list[Path]:
    """The notebooks under notebooks/ listed in _toc.yml, relative to the repository root."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    pages = [Path(f) for f in toc_files(toc) if Path(f).parts[0] == NOTEBOOK_DIR]
    notebooks = [p if p.suffix == ".ipynb" else p.with_suffix(".ipynb") for p in pages]
    missing = [str(p) for p in notebooks if not (root / p).is_file()]
    if missing:
        raise BuildError(f"_toc.yml lists notebooks that do not exist: {', '.join(missing)}")
    return notebooks


def select(notebooks: list[Path], only: Sequence[str] | None) -> list[Path]:
    """The notebooks whose file name starts with one of `only` (all of them without --only)."""
    if not only:
        return notebooks
    unmatched = [key for key in only if not any(nb.stem.startswith(key) for nb in notebooks)]
    if unmatched:
        names = ", ".join(nb.stem for nb in notebooks)
        raise BuildError(f"--only {' '.join(unmatched)} matches no lab in _toc.yml ({names})")
    return [nb for nb in notebooks if any(nb.stem.startswith(key) for key in only)]


def stage_sources(root: Path, stage: Path) -> None:
    """Refresh everything in the stage except executed notebooks, which a later step writes."""
    for name in STAGED_PATHS:
        source, target = root / name, stage / name
        if target.is_dir():
            shutil.rmtree(target)
        if source.is_dir():
            shutil.copytree(source, target, ignore=IGNORED)
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    # Images or data files next to the notebooks; the notebooks themselves come from papermill.
    shutil.copytree(
        root / NOTEBOOK_DIR,
        stage / NOTEBOOK_DIR,
        ignore=shutil.ignore_patterns("*.ipynb", "__pycache__", ".ipynb_checkpoints"),
        dirs_exist_ok=True,
    )


def read_notebook(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call,no-any-return]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def describe_device() -> str:
    """The GPU PyTorch sees, else the CPU model and thread count."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
        threads = torch.get_num_threads()
    except ImportError:
        threads = os.cpu_count() or 0
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"CPU: {cpu}, {threads} threads"


def quote(lines: list[str], keep: int = 6) -> str:
    """Indent `lines` for the failure message, eliding the middle of long ones."""
    if len(lines) > keep:
        lines = lines[: keep // 2] + ["..."] + lines[-(keep // 2) :]
    return "\n".join(f"    | {line}" for line in lines)


def plain_traceback(output: nbformat.NotebookNode, keep: int = 12) -> list[str]:
    """The last lines of an error output's traceback, without terminal colour codes."""
    text = "\n".join(output.get("traceback", []))
    lines = [line for line in ANSI_ESCAPE.sub("", text).splitlines() if line.strip()]
    return lines[-keep:]


def source_cell_number(nb: nbformat.NotebookNode, index: int) -> int:
    """1-based position of executed cell `index` in the source notebook (without papermill's)."""
    injected = sum(1 for cell in nb.cells[:index] if INJECTED_TAG in cell.metadata.get("tags", []))
    return index - injected + 1


def describe_cell(nb: nbformat.NotebookNode, index: int) -> str:
    cell = nb.cells[index]
    return (
        f"cell {source_cell_number(nb, index)} of the source notebook "
        f"(execution count {cell.get('execution_count')}):\n"
        f"{quote(cell.source.strip().splitlines())}"
    )


def unexpected_error(nb: nbformat.NotebookNode) -> str | None:
    """Describe the first cell that raised without being allowed to, or None.

    Papermill fails on any error output, even in a cell tagged `raises-exception`, and reports the
    first error it finds; this check honours the tag like nbval and Jupyter Book do.
    """
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or MAY_RAISE_TAG in cell.metadata.get("tags", []):
            continue
        for output in cell.get("outputs", []):
            if output.output_type == "error" and not (
                output.ename == "SystemExit" and output.evalue in ("", "0")
            ):
                return (
                    f"{describe_cell(nb, index)}\n  {output.ename}: {output.evalue}\n"
                    f"  Traceback (end):\n{quote(plain_traceback(output), keep=12)}"
                )
    return None


def crashed_cell(nb: nbformat.NotebookNode) -> str:
    """Describe the cell that was running when the kernel died or timed out."""
    started = [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and cell.metadata.get("papermill", {}).get("start_time")
    ]
    return describe_cell(nb, started[-1]) if started else "the kernel start, before any cell"


def tidy(nb: nbformat.NotebookNode) -> None:
    """Make an executed notebook fit for the book."""
    # Papermill's "An Exception was encountered" banners; our own message replaces them.
    nb.cells = [c for c in nb.cells if PAPERMILL_ERROR_TAG not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if INJECTED_TAG in tags and HIDE_TAG not in tags:
            tags.append(HIDE_TAG)


def _ipc_connection_file() -> str:
    """A fresh connection file in Jupyter's runtime folder, named after a new kernel id."""
    from jupyter_core.paths import jupyter_runtime_dir

    runtime = jupyter_runtime_dir()
    os.makedirs(runtime, exist_ok=True)
    return os.path.join(runtime, f"kernel-{uuid.uuid4()}.json")


def _ipc_kernel_manager(base: type) -> type:
    """``base`` (a jupyter_client kernel manager class) talking to its kernel over IPC sockets.

    Why: over TCP, jupyter_client picks five free ports by binding and releasing them, and the kernel
    binds them a moment later. Two executions started at once (a build beside a test run, or two labs)
    can pick the same ports and end up with crossed or dead sockets: kernels that warn "Use IPC
    transport", fail with ``Address already in use`` or ``Socket operation on non-socket``, or leave the
    client waiting for a reply forever (papermill#511, ipykernel#412). IPC sockets are files named after
    the kernel's own connection file, so no two kernels can share one.
    """

    class IPC(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("connection_file", _ipc_connection_file())
            super().__init__(*args, transport="ipc", **kwargs)

    IPC.__name__ = IPC.__qualname__ = f"IPC{base.__name__}"
    return IPC


#: How long one wait on a kernel socket may block before the socket is looked at again (seconds).
SOCKET_RECHECK_S = 1.0


def _rechecking_client() -> type:
    """An asynchronous kernel client whose channels never wait on one wake-up forever.

    Why: nbclient waits for a cell's reply with ``get_msg(timeout=None)``, a single await on the socket's
    edge-triggered readiness notification. If that notification is missed (seen with widget-heavy cells under
    load: the kernel is idle, its reply sits in the socket, the build waits forever; jupyter/nbclient#312), no
    further one comes. Waiting in bounded slices looks at the socket again every ``SOCKET_RECHECK_S``: a new
    poll checks the socket's state at once (pyzmq ``_add_recv_event``), so a message already there is taken.
    No cell is timed out and nothing is retried.
    """
    from queue import Empty

    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.channels import AsyncZMQSocketChannel
    from traitlets import Type

    class RecheckingChannel(AsyncZMQSocketChannel):
        async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
            if timeout is not None:
                return await super().get_msg(timeout)
            while True:
                try:
                    return await super().get_msg(SOCKET_RECHECK_S)
                except Empty:
                    continue

    class RecheckingClient(AsyncKernelClient):
        shell_channel_class = Type(RecheckingChannel)
        iopub_channel_class = Type(RecheckingChannel)

    return RecheckingClient


def ipc_kernel_manager_classes() -> tuple[type, type]:
    """(synchronous, asynchronous) kernel managers on IPC transport: nbval uses the first, nbclient the second
    (whose client also re-checks its sockets, ``_rechecking_client``)."""
    from jupyter_client.manager import AsyncKernelManager, KernelManager

    async_ipc = _ipc_kernel_manager(AsyncKernelManager)

    class AsyncIPC(async_ipc):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("client_factory", _rechecking_client())
            super().__init__(*args, **kwargs)

    AsyncIPC.__name__ = AsyncIPC.__qualname__ = async_ipc.__name__
    return _ipc_kernel_manager(KernelManager), AsyncIPC


def execute(notebook: Path, root: Path, stage: Path, profile: str, device: str) -> Run:
    """Run one lab with papermill into the stage; raise NotebookFailed if it fails.

    No cell time limit: a slow machine makes the build slower, never makes it fail.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, target = root / notebook, stage / notebook
    if not any("parameters" in c.metadata.get("tags", []) for c in read_notebook(source).cells):
        raise BuildError(
            f"{notebook} has no cell tagged `parameters`; add one with\n"
            '    profile = os.environ.get("LABKIT_PROFILE", "smoke")'
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    crash: Exception | None = None
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source),
            str(target),
            parameters={"profile": profile},
            kernel_name=KERNEL,
            cwd=str(source.parent),
            progress_bar=True,
            store_widget_state=True,  # nbclient's default, stated: the book renders this state
            kernel_manager_class=ipc_kernel_manager_classes()[1],
        )
    except PapermillExecutionError:
        pass  # re-checked from the saved notebook, which honours `raises-exception`
    except Exception as exc:  # a dead kernel or a timeout: papermill saved what had run
        crash = exc
    wall_s = time.perf_counter() - start
    finished = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    error: str | None = None
    if target.is_file():
        nb = read_notebook(target)
        tidy(nb)
        nbformat.write(nb, target)  # type: ignore[no-untyped-call]
        error = unexpected_error(nb)
        if crash is not None:
            error = f"{crashed_cell(nb)}\n  {type(crash).__name__}: {crash}"
    elif crash is not None:
        error = f"the kernel start\n  {type(crash).__name__}: {crash}"
    executed = read_notebook(target) if target.is_file() else None
    run = Run(
        notebook=str(notebook),
        profile=profile,
        status="failed" if error else "ok",
        wall_s=wall_s,
        finished=finished,
        device=device,
        source_sha256=sha256(source),
        numbers=numbers_of(executed) if executed is not None else "",
        code=code_of(executed) if executed is not None else "",
    )
    if error:
        raise NotebookFailed(run, f"{notebook} failed in {error}\n  Executed copy: {target}")
    return run


def execute_lab(notebook: Path, root: Path, stage: Path, profile: str, device: str, replay: str) -> Run:
    """``execute`` with the kernels' ``LABKIT_REPLAY`` set to ``replay``; in ``auto``, a lab that found its record
    stale part-way (its profile matched, a model's cache key did not: code or data changed) is executed once
    more, computing. Any other failure, or a stale record under ``only``, fails the build."""
    os.environ["LABKIT_REPLAY"] = replay
    try:
        return execute(notebook, root, stage, profile, device)
    except NotebookFailed as failure:
        if replay != "auto" or STALE not in str(failure):
            raise
        log(f"{notebook}: its record is stale ({STALE}); executing it again, computing")
    os.environ["LABKIT_REPLAY"] = "never"
    try:
        return execute(notebook, root, stage, profile, device)
    finally:
        os.environ["LABKIT_REPLAY"] = replay


def _execute_lab_outcome(notebook: Path, root: Path, stage: Path, profile: str, device: str,
                         replay: str) -> tuple[Run, str | None]:
    """``execute_lab`` in a worker process: (run, None), or (run, message) when the lab failed (an exception with
    extra constructor arguments does not cross a process boundary intact)."""
    try:
        return execute_lab(notebook, root, stage, profile, device, replay), None
    except NotebookFailed as failure:
        return failure.run, str(failure)


def execute_labs(notebooks: Sequence[Path], root: Path, stage: Path, profile: str, device: str, replay: str,
                 jobs: int = 1) -> Iterator[Run]:
    """Execute ``notebooks`` (``execute_lab``), yielding their runs in order; ``jobs`` > 1 runs that many at once
    (replay only: a computing lab may read what an earlier one wrote), each kernel on one thread."""
    if jobs <= 1:
        for notebook in notebooks:
            log(f"executing {notebook} (cwd {root / NOTEBOOK_DIR})")
            yield execute_lab(notebook, root, stage, profile, device, replay)
        return
    import multiprocessing

    log(f"executing {len(notebooks)} labs, {jobs} at a time, one thread each (cwd {root / NOTEBOOK_DIR})")
    threads = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({name: "1" for name in threads})  # the kernels inherit it
    try:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            outcomes = pool.imap(_execute_lab_star, [(nb, root, stage, profile, device, replay) for nb in notebooks])
            for run, failure in outcomes:
                if failure is not None:
                    pool.terminate()
                    raise NotebookFailed(run, failure)
                yield run
    finally:
        for name, value in threads.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _execute_lab_star(args: tuple[Any, ...]) -> tuple[Run, str | None]:
    return _execute_lab_outcome(*args)


def printed(nb: nbformat.NotebookNode) -> str:
    """Everything an executed notebook printed (its stdout streams)."""
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stdout")


def numbers_of(nb: nbformat.NotebookNode) -> str:
    """Whether an executed lab replayed its record or computed its numbers (from what ``LabRecord.describe``
    printed; "" for a page without a record)."""
    text = printed(nb)
    return "replayed" if "; replayed from results/" in text else "computed" if "; recorded in results/" in text else ""


#: What ``LabRecord.describe`` prints of a replayed record made by other code (group 1: the modules, comma-separated).
CODE_CHANGED = re.compile(r"Code: differs from the record's in (.+?) \(changed since the record was made\)")


def code_of(nb: nbformat.NotebookNode) -> str:
    """A replayed lab's record against the current code (``Run.code``), from what ``LabRecord.describe`` printed:
    "changed: <modules>" (without the ``labkit.`` prefix), "unchanged", "not recorded", or ""."""
    text = printed(nb)
    if "; replayed from results/" not in text:
        return ""
    changed = CODE_CHANGED.search(text)
    if changed:
        return "changed: " + ", ".join(m.strip().removeprefix("labkit.") for m in changed.group(1).split(","))
    return "not recorded" if "Code: not fingerprinted" in text else "unchanged" if "Code: the record's" in text else ""


def drift_warnings(runs: Sequence[Run]) -> list[str]:
    """One warning per lab whose replayed record was made by other code (how to recompute it included), and one
    line for the labs whose records are too old to tell; [] when every replayed record matches the code."""
    lines = [f"WARNING: {Path(r.notebook).stem} replays a record made by other code ({r.code.split(': ', 1)[1]} "
             f"changed since); its numbers may differ if recomputed: python tools/build_book.py --profile "
             f"{r.profile} --recompute --only {Path(r.notebook).stem.split('_')[0]}"
             for r in runs if r.code.startswith("changed: ")]
    unknown = [Path(r.notebook).stem for r in runs if r.code == "not recorded"]
    if unknown:
        lines.append(f"note: {len(unknown)} records predate code fingerprints, so whether their code changed is not "
                     f"known: {', '.join(unknown)}")
    return lines


def load_records(stage: Path) -> dict[str, Run]:
    path = stage / RECORDS_FILE
    if not path.is_file():
        return {}
    return {key: Run(**value) for key, value in json.loads(path.read_text()).items()}


def save_records(stage: Path, records: dict[str, Run]) -> None:
    data = {key: dataclasses.asdict(run) for key, run in records.items()}
    (stage / RECORDS_FILE).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def carry_over(notebook: Path, root: Path, stage: Path, records: dict[str, Run]) -> Run:
    """A lab not executed this time: keep its earlier executed copy, or stage it without outputs."""
    record = records.get(str(notebook))
    if record is not None and record.status == "ok" and (stage / notebook).is_file():
        if record.source_sha256 != sha256(root / notebook):
            record.status = "ok (stale: source changed since)"
        return record
    (stage / notebook).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(root / notebook, stage / notebook)
    return Run(str(notebook), "", "not executed", None, "", "", sha256(root / notebook))


def key_result_cell(lines: list[str], lab: str, files: list[str], profile: str) -> nbformat.NotebookNode:
    """The "Key result" box of a lab page: ``lines`` as a list, then download links to its record ``files``."""
    links = " · ".join(f"{{download}}`{name} <../{RECORDS_DIR}/{name}>`" for name in files)
    body = [*(f"- {line}" for line in lines), ""] if lines else []
    record = (f"The numbers on this page, as data: {links} (the `{profile}` record this page replays; "
              "`labkit.records.load` reads it)." if files else "")
    cell = nbformat.v4.new_markdown_cell("\n".join([":::{admonition} Key result", ":class: tip", "", *body, record,
                                                   ":::"]))
    cell.metadata["tags"] = [KEY_RESULT_TAG]
    return cell


def add_findings(notebooks: Sequence[Path], stage: Path, profile: str) -> None:
    """Step 4: key-result boxes on the executed lab pages, record downloads, the landing page's findings."""
    from labkit import claims, findings, records  # the kernels' labkit, in the same environment

    recs = records.load_all(profile)
    table = claims.claims_table(recs) if recs else []
    source = records.results_root() / profile
    target = stage / RECORDS_DIR
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for notebook in notebooks:
        staged = stage / notebook
        if not staged.is_file():
            continue
        lab = notebook.stem
        files = [f.name for f in (source / f"{lab}.json", source / f"{lab}.npz") if f.is_file()]
        for name in files:
            shutil.copy2(source / name, target / name)
        nb = read_notebook(staged)
        nb.cells = [c for c in nb.cells if KEY_RESULT_TAG not in c.get("metadata", {}).get("tags", [])]
        lines = findings.key_result(recs, lab, table) if lab in recs else []
        if lines or files:  # after the title cell: what the lab found comes first
            nb.cells.insert(1, key_result_cell(lines, lab, files, profile))
        nbformat.write(nb, staged)
    figure = None
    fig = findings.findings_figure(table) if table else None
    if fig is not None:
        (stage / FINDINGS_PAGE.parent / FINDINGS_FIGURE).write_bytes(fig._repr_png_())  # as a lab's figure shows
        figure = FINDINGS_FIGURE
    text = (findings.findings_markdown(recs, table, figure) if table else
            f"*No `{profile}` records yet: run the labs (`make book`) and this section lists what they found.*\n")
    (stage / FINDINGS_PAGE).write_text(text, encoding="utf-8")
    log(f"wrote key results for {len(recs)} records and {stage / FINDINGS_PAGE}")


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def git_revision(root: Path) -> str:
    try:
        rev = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev.replace("-dirty", " (with uncommitted changes)")


def status_page(runs: list[Run], root: Path) -> str:
    """The execution-status page: one row per lab, in book order."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        import torch

        torch_version = str(torch.__version__)
    except ImportError:
        torch_version = "not installed"
    rows = [
        f"| {{doc}}`/{Path(r.notebook).with_suffix('').as_posix()}` | {r.profile} | {r.status} "
        f"| {r.numbers or '-'} | {r.code or '-'} | {format_seconds(r.wall_s)} | {r.finished} | {r.device} |"
        for r in runs
    ]
    return "\n".join(
        [
            "# Execution status",
            "",
            "Every page below was executed when the book was built, with the profile shown (see",
            "{doc}`running`). Its numbers were either *computed* by that execution or *replayed* from",
            "the lab's result record (`results/<profile>/`), written by the run that computed them: each",
            "page says which run that was. *Code since record* compares a replayed record's fingerprint of",
            "the labkit code that computed it with the code now: the modules that *changed* since may give",
            "other numbers if the lab is recomputed; *not recorded* marks records made before records kept",
            "a fingerprint. Times are wall-clock, kernel start included; dates are UTC.",
            "",
            "| Lab | Profile | Status | Numbers | Code since record | Wall time | Executed | Device |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Book built {now} from revision `{git_revision(root)}` with Python "
            f"{platform.python_version()} and PyTorch {torch_version}.",
            "",
        ]
    )


def jupyter_book_command() -> str:
    """The jupyter-book of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("jupyter-book")
    found = str(beside) if beside.is_file() else shutil.which("jupyter-book")
    if found is None:
        raise BuildError("jupyter-book is not installed (pip install -r requirements.txt)")
    return found


def build_html(stage: Path, out: Path) -> Path:
    """Run jupyter-book on the stage; the HTML lands in OUT/html."""
    # jupyter-book always writes to <path-output>/_build/html: point <path-output> at a folder
    # whose _build is OUT itself.
    if out.name == "_build":
        path_output = out.parent
    else:
        path_output = out / ".jupyter-book"
        link = path_output / "_build"
        if not link.is_symlink():
            path_output.mkdir(parents=True, exist_ok=True)
            link.symlink_to("..", target_is_directory=True)
    command = [
        jupyter_book_command(),
        "build",
        str(stage),
        "--path-output",
        str(path_output),
        "--builder",
        "html",
        "-W",  # warnings are errors
        "--keep-going",  # ... but list all of them first
        "--all",  # re-read every page, so warnings are never hidden by an incremental build
    ]
    log("$ " + " ".join(command))
    if subprocess.run(command, check=False).returncode != 0:
        raise BuildError(
            "jupyter-book build failed (warnings are errors): see the messages above; "
            f"a file under {stage} is the staged copy of the same path in the repository"
        )
    index = out / "html" / "index.html"
    if not index.is_file():
        raise BuildError(f"jupyter-book finished but {index} is missing")
    return index


def kernel_environment(profile: str, replay: str) -> None:
    """Environment that papermill's kernels inherit from this process."""
    os.environ["LABKIT_PROFILE"] = profile
    os.environ["LABKIT_REPLAY"] = replay
    # The kernels run in notebooks/, so a relative path given here (LABKIT_DATA=../shared/...)
    # is made absolute against the directory this script was started from.
    for name in ("LABKIT_DATA", "LABKIT_CACHE", "LABKIT_RESULTS"):
        if os.environ.get(name):
            os.environ[name] = str(Path(os.environ[name]).expanduser().absolute())
    # CI exports MPLBACKEND=Agg for plain Python; in a kernel that would replace the inline backend
    # and the figures would never reach the notebook.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = REPO_ROOT
    out = args.out.resolve()
    stage = out / "stage"
    started = time.perf_counter()
    try:
        profile = resolve_profile(args.profile)
        replay = resolve_replay(args)
        notebooks = toc_notebooks(root)
        chosen = select(notebooks, args.only)
        device = describe_device()
        log(f"profile {profile}, replay {replay}; {len(chosen)} of {len(notebooks)} labs to execute on {device}")
        kernel_environment(profile, replay)
        log(f"LABKIT_DATA={os.environ.get('LABKIT_DATA', '(unset: torchvision download)')}")
        log(f"LABKIT_CACHE={os.environ.get('LABKIT_CACHE', '(unset: ~/.cache/labkit)')}")
        stage_sources(root, stage)
        records = load_records(stage)
        runs: list[Run] = []
        jobs = max(1, args.jobs) if replay == "only" else 1
        try:
            for number, run in enumerate(execute_labs(chosen, root, stage, profile, device, replay, jobs), start=1):
                records[run.notebook] = run
                log(f"[{number}/{len(chosen)}] {run.notebook}: ok ({run.numbers or 'no record'}) in "
                    f"{format_seconds(run.wall_s)}")
        except NotebookFailed as failure:
            records[failure.run.notebook] = failure.run
            raise
        finally:
            save_records(stage, records)
        for notebook in notebooks:
            run = (
                records[str(notebook)]
                if notebook in chosen
                else carry_over(notebook, root, stage, records)
            )
            if notebook not in chosen and run.profile:
                log(f"kept {notebook} as executed {run.finished} UTC ({run.profile}, {run.status})")
            elif notebook not in chosen:
                log(f"{notebook} was never executed in {stage}: built without outputs")
            runs.append(run)
        for line in drift_warnings(runs):  # a warning, not a failure: the page says what it replays
            log(line)
        add_findings(notebooks, stage, profile)
        (stage / STATUS_PAGE).write_text(status_page(runs, root), encoding="utf-8")
        log(f"wrote {stage / STATUS_PAGE}")
        index = build_html(stage, out)
        postbuild = _postbuild()
        removed = postbuild.strip_source_maps(index.parent)  # developer-tool files no reader loads
        log(f"removed {len(removed)} source maps")
        unloaded = postbuild.drop_unloaded_assets(index.parent)
        log(f"removed {len(unloaded)} files no page loads (the theme's translations, TrueType fonts beside woff2)")
        was, now = postbuild.palette_images(index.parent)
        log(f"figures as palette PNGs: {was / 1e6:.1f} -> {now / 1e6:.1f} MB")
    except BuildError as error:
        print(f"\n[build_book] FAILED: {error}", file=sys.stderr, flush=True)
        return 1
    log(f"done in {format_seconds(time.perf_counter() - started)}: {index}")
    return 0


def _postbuild() -> Any:
    """``tools/postbuild.py``, loaded by path: this file runs as a script (``python tools/build_book.py``) and is
    imported as ``tools.build_book`` by the tests, and a by-path import works for both without touching sys.path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("labkit_postbuild", Path(__file__).with_name("postbuild.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    sys.exit(main())
