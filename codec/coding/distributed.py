"""Coding a corpus on a Ray cluster with Ray Data: ``aecodec encode|decode --ray`` and ``encode_paths`` /
``decode_paths`` for people who build their own pipelines.

Each input is a row (input path, output path) of a Ray Dataset. ``map_batches`` hands batches of rows to actors
(``EncodeWorker``, ``DecodeWorker``: usable in any ``map_batches``) that load the model once and run
``codec.coding.jobs.run``, the local command's own path, so a file coded on the cluster is byte-identical to the one the
local command writes; each batch comes back as one results row per input (``RESULT_COLUMNS``). Inputs and
outputs are paths on a filesystem that every worker sees.

A worker that dies is Ray's to handle: Ray Data restarts its actor and retries its batch (its defaults,
``max_restarts`` and ``max_task_retries`` -1: without limit, so an input that killed every worker it reached
would be tried forever; ``files.open_image`` and ``bitstream.unpack`` refuse sizes that could). Outputs that
the dead worker had already written are recognized by their bytes and time (``jobs.Options.since``) and count
as written; the write itself stays the atomic no-overwrite one (``files.write_atomic``), so no partial file
ever has a final name.

Ray is imported here only, inside functions: ``aecodec`` without ``--ray`` never loads it.
"""

from __future__ import annotations

import csv
import errno
import io
import logging
import os
import secrets
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import EXIT_OTHER, AecError
from ..format import files
from ..weights.shipping import MAIN
from . import jobs

if TYPE_CHECKING:
    import numpy as np
    import ray.data

#: The results table a ``--ray`` job writes into its output folder (replaced by each run).
RESULTS_NAME = "aecodec-results.csv"
RESULT_COLUMNS = ("input", "output", "bytes", "bpp", "quality", "seconds", "error", "skipped", "status")


def install_hint() -> str:
    """How to install Ray for ``--ray``: the ``[ray]`` extra's own requirements, read from the installed
    metadata (pyproject.toml is their one place), since ``pip install 'aecodec[ray]'`` finds no aecodec on any
    package index; from a checkout, its editable install with the extra."""
    from importlib import metadata

    try:
        requires = metadata.requires(MAIN) or []
    except metadata.PackageNotFoundError:
        requires = []
    extra = [
        name.strip()
        for name, _, marker in (req.partition(";") for req in requires)
        if marker.replace(" ", "").replace("'", '"') == 'extra=="ray"'
    ]
    checkout = "in a checkout of aecodec: pip install -e '.[ray]'"
    return f"pip install {' '.join(repr(req) for req in extra)} ({checkout})" if extra else checkout


def require_ray() -> None:
    """AecError with the install line when Ray Data is not installed."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise AecError(f"--ray needs Ray, which is not installed: {install_hint()}") from None


# -- the plan: which files, written where (pure, no Ray) ------------------------------------------------
def plan(inputs: Sequence[str], output_dir: str | None, options: jobs.Options) -> list[tuple[str, str]]:
    """(input, output) of every file a job codes into ``output_dir``, decided before anything runs; outputs that
    two inputs would share are refused naming both, as the local command does."""
    if (
        not output_dir
        or output_dir == files.STDIO
        or not (output_dir.endswith(("/", os.sep)) or os.path.isdir(output_dir))
    ):
        raise AecError("--ray writes into a folder: give -o OUTDIR/ (an existing folder, or a name ending in /)")
    if files.STDIO in inputs:
        raise AecError("--ray reads files, not stdin (-)")
    suffix = jobs.output_suffix(options)
    pairs = [(src, os.path.join(output_dir, name + suffix)) for src, name in jobs.walk(inputs, options)]
    files.refuse_shared_outputs([s for s, _ in pairs], [d for _, d in pairs])
    return pairs


def check_folder(output_dir: str) -> None:
    """Create the output folder, and refuse what would stop the job only at its end, before Ray starts: a folder
    that cannot be made or written into (a file's name, a symlink loop, ``/proc``) or a results table's name
    taken by something that is not a file. One AecError line, as the local command gives. Folders it had to make
    are removed again (the job makes them): a command that stops before the job leaves nothing behind."""
    folder = Path(output_dir)
    missing = [p for p in [folder, *folder.parents] if not os.path.lexists(p)]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK | os.X_OK)
        for made in missing:  # deepest first
            made.rmdir()
    except OSError as e:
        reason = files.os_reason(e)
        if e.errno == errno.EEXIST:  # the name is taken: by a file, or by a link that leads nowhere
            try:
                os.stat(folder)
                reason = "not a folder"
            except OSError as why:
                reason = files.os_reason(why)
        raise AecError(f"-o {output_dir}: cannot make or use this output folder ({reason})") from None
    if not writable:
        raise AecError(f"-o {output_dir}: cannot write into it (permission denied)")
    results = folder / RESULTS_NAME
    if os.path.lexists(results) and not results.is_file():
        raise AecError(f"{results}: not a file; the results table is written there (move it away)")


# -- the workers ----------------------------------------------------------------------------------------
class _Worker:
    """A Ray Data actor: the coder built once from the options (model loaded), then one results row per input
    of each batch of ``{"input": [...], "output": [...]}`` rows."""

    coder_class: type[jobs.Coder]

    def __init__(self, options: jobs.Options) -> None:
        self.coder = self.coder_class(options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = []
        for outcome in jobs.run(self.coder, zip(map(str, batch["input"]), map(str, batch["output"]), strict=True)):
            rows.append(outcome.row())
        return {key: [row[key] for row in rows] for key in jobs.Outcome.__dataclass_fields__}


class EncodeWorker(_Worker):
    """``map_batches(EncodeWorker, fn_constructor_kwargs={"options": jobs.EncodeOptions(...)}, ...)``."""

    coder_class = jobs.Encoder


class DecodeWorker(_Worker):
    """``map_batches(DecodeWorker, fn_constructor_kwargs={"options": jobs.DecodeOptions(...)}, ...)``."""

    coder_class = jobs.Decoder


# -- the job --------------------------------------------------------------------------------------------
@contextmanager
def without_ray_lines() -> Iterator[None]:
    """Drop what Ray's C++ core writes to this process's stderr (file descriptor 2, past Python's logging), e.g.
    ``core_worker.cc … E`` on every Ray Data actor (its arguments are in the object store and it restarts:
    ray-project/ray#53727); Python's ``sys.stderr`` keeps writing to the real stderr. For ``--quiet``: setting
    ``RAY_BACKEND_LOG_LEVEL`` instead makes the core print a line saying so."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    before = sys.stderr
    try:
        takes_fd2 = before.fileno() == 2
    except (AttributeError, OSError, ValueError):  # replaced by a stream without a descriptor (tests)
        takes_fd2 = False
    try:
        if takes_fd2:
            sys.stderr = open(
                saved, "w", buffering=1, encoding=before.encoding, errors="backslashreplace", closefd=False
            )
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = before
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def connect(address: str | None = None, progress: bool | None = None) -> None:
    """Join the cluster at ``address`` (else ``RAY_ADDRESS``; else start a local one, on the loopback, without
    dashboard), unless this process already has. ``progress`` False keeps Ray Data quiet (no bars, no
    progress logs), True shows its bars; None leaves them as they are."""
    import ray
    import ray.data

    if progress is not None:
        ray.data.DataContext.get_current().enable_progress_bars = progress
        logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.ERROR)
    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    else:
        ray.init(
            include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False, _node_ip_address="127.0.0.1"
        )


def filesystem_now(folder: str) -> float:
    """The time now on the clock of the filesystem that holds ``folder`` (created if needed), which is what
    stamps the outputs: the mtime of a file made and removed there. Workers compare against it, not their own."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    probe = Path(folder) / f".aecodec-start.{secrets.token_hex(4)}"
    try:
        probe.touch(exist_ok=False)
        return probe.stat().st_mtime
    finally:
        probe.unlink(missing_ok=True)


def job(
    pairs: Sequence[tuple[str, str]], options: jobs.Options, output_dir: str, workers: int | None = None
) -> ray.data.Dataset:
    """The lazy Ray Dataset of results rows of coding ``pairs``: ``workers`` actors (default: one per GPU of the
    cluster, else its CPUs divided by ``options.threads``), each with ``options.threads`` CPUs (default 1) and,
    on a cluster with GPUs (unless ``device`` is cpu), one GPU, fed ``batch`` rows at a time."""
    import ray
    import ray.data

    connect()
    worker = EncodeWorker if isinstance(options, jobs.EncodeOptions) else DecodeWorker
    resources = ray.cluster_resources()
    gpus = 0 if options.device == "cpu" else int(resources.get("GPU", 0))
    if options.device.startswith("cuda") and not gpus:
        raise AecError(f"--device {options.device} asked for, but the Ray cluster has no GPU")
    threads = options.threads or 1
    options = replace(options, threads=threads, since=filesystem_now(output_dir))
    workers = min(workers or gpus or max(1, int(resources.get("CPU", 1)) // threads), len(pairs))
    rows = ray.data.from_items([{"input": src, "output": dest} for src, dest in pairs])
    return rows.map_batches(
        worker,
        fn_constructor_kwargs={"options": options},
        batch_size=jobs.batch_size(options.batch, gpus > 0),
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=threads,
        num_gpus=1 if gpus else 0,
    )


def encode_paths(
    inputs: Sequence[str], output_dir: str, *, workers: int | None = None, **options: Any
) -> ray.data.Dataset:
    """Encode files, folders (walked) and globs into ``output_dir`` on the Ray cluster (``connect``'s): the lazy
    Dataset of results rows (``RESULT_COLUMNS``), one per input, computed as it is consumed. ``options``: the
    fields of ``jobs.EncodeOptions`` (quality, target_bpp, max_bytes, model_id, tile, effort, iterations, device,
    batch, threads, force, skip_existing)."""
    checked = jobs.EncodeOptions(**options).checked()
    pairs = plan(inputs, output_dir, checked)
    check_folder(output_dir)
    return job(pairs, checked, output_dir, workers)


def decode_paths(
    inputs: Sequence[str], output_dir: str, *, workers: int | None = None, **options: Any
) -> ray.data.Dataset:
    """Decode ``.aec`` files, folders and globs into ``output_dir``, as ``encode_paths``; ``options``: the fields
    of ``jobs.DecodeOptions`` (fmt, out_quality, drop_alpha, max_pixels, device, batch, threads, force,
    skip_existing)."""
    checked = jobs.DecodeOptions(**options)
    pairs = plan(inputs, output_dir, checked)
    check_folder(output_dir)
    return job(pairs, checked, output_dir, workers)


def outcomes(results: ray.data.Dataset) -> Iterator[jobs.Outcome]:
    """The job's outcomes as its rows arrive (running it)."""
    for row in results.iter_rows():
        yield jobs.Outcome(**{key: row[key] for key in jobs.Outcome.__dataclass_fields__})


def table(outcomes: Iterable[jobs.Outcome], pairs: Sequence[tuple[str, str]]) -> str:
    """The results table as CSV, in the order of ``pairs``; an input the job never reported (it stopped) is a
    row with that error."""
    by_input = {o.input: o for o in outcomes}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for src, dest in pairs:
        o = by_input.get(src) or jobs.Outcome(src, dest, error=f"{src}: not coded, the job stopped", status=EXIT_OTHER)
        row = o.row()
        row["bpp"], row["seconds"] = round(float(row["bpp"]), 6), round(float(row["seconds"]), 3)
        writer.writerow([row[key] for key in RESULT_COLUMNS])
    return buf.getvalue()


def write_table(outcomes: Iterable[jobs.Outcome], pairs: Sequence[tuple[str, str]], output_dir: str) -> str:
    """Write ``table`` to OUTDIR/aecodec-results.csv (atomically, replacing an earlier run's); its path."""
    path = os.path.join(output_dir, RESULTS_NAME)
    files.write_output(path, table(outcomes, pairs).encode(), force=True)
    return path
