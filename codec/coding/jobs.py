"""Coding many files: the per-input path that the ``aecodec`` command and the Ray workers (``codec.coding.distributed``)
both run, so a file coded on a cluster is byte-identical to the one the local command writes.

A coder (``Encoder``, ``Decoder``) loads its model once from picklable options; ``run`` takes (input, output)
pairs through it ``batch`` at a time, the next inputs read ahead in threads, and yields one ``Outcome`` per
input: written, skipped (``skip_existing``) or failed, with the one-line error that names the input. A failure
concerns its inputs alone; the caller decides how to report (lines on the console, a results table).

Importing this module costs no torch: the encoder imports the network stack when it is built, the decoder only
when a file's model needs it (a fitted file's does not: ``codec.coding.decoding``).
"""

from __future__ import annotations

import glob
import itertools
import os
import stat
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.errors import EXIT_BAD_INPUT, EXIT_OTHER, AecError
from ..format import files
from .options import DecodeOptions, EncodeOptions, Options  # noqa: F401  (re-exported: the jobs' options)

if TYPE_CHECKING:
    from .encoding import Encoded

T = TypeVar("T")


def one_line(msg: str) -> str:
    """Messages can quote library errors or file names; each failure is promised as one line."""
    return " ".join(str(msg).split())


def labelled(src: str, msg: str) -> str:
    """Prefix a failure with its input, so a batch run says which file it was about."""
    name = files.label(src)
    return msg if msg.startswith(f"{name}:") else f"{name}: {msg}"


def arrow(src: str, dest: str) -> str:
    return f"{files.label(src)} -> {'stdout' if dest == files.STDIO else dest}"


@dataclass(frozen=True)
class Outcome:
    """One input's result: a row of the results table. ``bytes``: the output's size; ``bpp`` and ``quality``:
    the ``.aec`` file's (written by encode, read by decode). ``status``: the exit status it asks for (0, or
    ``EXIT_BAD_INPUT`` / ``EXIT_OTHER`` with ``error``, one line naming the input)."""

    input: str
    output: str
    bytes: int = 0
    bpp: float = 0.0
    quality: float = 0.0
    pixels: int = 0
    seconds: float = 0.0
    error: str = ""
    status: int = 0
    skipped: bool = False
    summary: str = ""  # the line ``-v`` prints

    def row(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- which files: folders and globs walked (the local command and ``--ray`` alike) ----------------------------
def output_suffix(options: Options) -> str:
    """The suffix of the outputs that ``options`` write: ``.aec`` for encode, the decoded image's for decode."""
    if isinstance(options, EncodeOptions):
        return ".aec"
    return getattr(options, "suffix", None) or ".png"


def is_walked(pattern: str) -> bool:
    """Whether an input names several files: a folder, or a glob (``*``, ``?``, ``[``, ``**``) no file is named."""
    return os.path.isdir(pattern) or (not os.path.lexists(pattern) and glob.has_magic(pattern))


def walk(inputs: Iterable[str], options: Options) -> list[tuple[str, str]]:
    """(file, output name without suffix, relative to an output folder) for each input: a file as itself (its
    stem; stdin ``stdin``); a folder walked in sorted order, its files whose suffix the job reads (images for
    encode, ``.aec`` for decode) keeping their path below it (hidden names skipped); a glob as its matches,
    files or folders. Walked names that are not regular files (a FIFO, a dangling link) are skipped: reading
    one could wait forever. AecError when a glob matches nothing or nothing is found at all."""
    wanted = files.input_suffixes() if isinstance(options, EncodeOptions) else {".aec"}
    out: list[tuple[str, str]] = []
    for pattern in inputs:
        roots = [pattern]
        if is_walked(pattern) and not os.path.isdir(pattern):
            roots = [p for p in sorted(glob.glob(pattern, recursive=True)) if os.path.isdir(p) or os.path.isfile(p)]
            if not roots:
                raise AecError(f"{pattern}: no file matches")
        for root in roots:
            if not os.path.isdir(root):
                out.append((root, "stdin" if root == files.STDIO else Path(root).stem))
                continue
            for folder, subdirs, names in os.walk(root):
                subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
                rel = Path(folder).relative_to(root)
                for name in sorted(names):
                    path = os.path.join(folder, name)
                    if not name.startswith(".") and Path(name).suffix.lower() in wanted and os.path.isfile(path):
                        out.append((path, str(rel / Path(name).stem)))
    if not out:
        what = "images" if isinstance(options, EncodeOptions) else ".aec files"
        raise AecError(f"no {what} found in {' '.join(inputs)}")
    return out


def plan_here(inputs: Sequence[str], out: str | None, options: Options) -> tuple[list[str], list[str]]:
    """The local command's (inputs, outputs), decided before any work. Named files as ``files.output_paths``
    places them; with a folder or a glob among the inputs, each file ``walk`` finds goes beside itself, or
    under ``-o FOLDER/`` keeping its path below the walked folder, as ``--ray`` places them."""
    suffix = output_suffix(options)
    if not any(map(is_walked, inputs)):
        return list(inputs), files.output_paths(inputs, out, suffix, options.force)
    folder = out is not None and out != files.STDIO and (os.path.isdir(out) or out.endswith(("/", os.sep)))
    if out is not None and not folder:
        raise AecError(f"-o {out}: with a folder or a glob as input, -o must be a folder (existing, or ending in /)")
    found = walk(inputs, options)
    srcs = [src for src, _ in found]
    dests = [os.path.join(out, name + suffix) if folder else files.default_output(src, suffix) for src, name in found]
    files.refuse_shared_outputs(srcs, dests)
    if files.STDIO in dests:
        files.check_output(files.STDIO, options.force)
    return srcs, dests


def failure(src: str, dest: str, e: Exception) -> Outcome:
    """The outcome of an input whose step raised: AecError is the input's fault (exit 2), anything else ours (1)."""
    if isinstance(e, AecError):
        return Outcome(src, dest, error=one_line(labelled(src, str(e))), status=EXIT_BAD_INPUT)
    return Outcome(src, dest, error=one_line(f"{src}: internal error: {type(e).__name__}: {e}"), status=EXIT_OTHER)


def batch_size(batch: int, on_gpu: bool) -> int:
    """``--batch 0`` (auto): a GPU gets ``BATCH`` images per network pass, a CPU one (batching measured no faster)."""
    from ..core.devices import BATCH

    if batch < 0:
        raise AecError(f"--batch must be 0 (auto) or positive, got {batch}")
    return batch or (BATCH if on_gpu else 1)


def check_not_input(src: str, dest: str) -> None:
    if src != files.STDIO and dest != files.STDIO and files.resolved(src) == files.resolved(dest):
        raise AecError(f"{src}: output would overwrite the input")


def check_dest(src: str, dest: str, force: bool) -> None:
    check_not_input(src, dest)
    files.check_output(dest, force)


def maybe_written_since(dest: str, since: float) -> bool:
    """Whether ``dest`` is a regular file (not a link: this job writes none) modified at or after ``since``."""
    try:
        st = os.lstat(dest)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_mtime >= since


def written_since(dest: str, data: bytes, since: float) -> bool:
    """Whether ``dest`` already holds exactly ``data`` and was modified at or after ``since``."""
    try:
        if not maybe_written_since(dest, since) or os.path.getsize(dest) != len(data):
            return False
        with open(dest, "rb") as f:
            return f.read() == data
    except OSError:
        return False


class Coder:
    """The model loaded once, and the three steps of an input: ``load`` its data (in a read-ahead thread),
    ``prepare`` it (check its output, take the data), ``code`` a batch of prepared inputs into write steps."""

    def __init__(self, options: Options) -> None:
        from ..core.devices import check_device_name
        from ..core.lean import import_compressai_lean

        import_compressai_lean()
        check_device_name(options.device)
        batch_size(options.batch, on_gpu=False)  # a bad --batch fails before any work
        self.options = options

    @property
    def batch(self) -> int:
        """Inputs per ``code`` call (``run`` reads it as each batch fills, after its first input is prepared)."""
        raise NotImplementedError

    @property
    def read_ahead(self) -> int:
        """Inputs ``run`` loads ahead in threads."""
        return max(2, self.options.batch)

    def torch_ready(self) -> None:
        """``--threads`` for torch, once a model that needs torch is loaded (a fitted file's decoder runs
        without it, on one thread)."""
        if self.options.threads and "torch" in sys.modules:
            import torch

            torch.set_num_threads(self.options.threads)

    def prepare_dest(self, src: str, dest: str) -> None:
        """Refuse an input whose output exists before any work, unless this job may have written it (``since``:
        then the write decides)."""
        check_not_input(src, dest)
        since = self.options.since
        if since is None or not maybe_written_since(dest, since):  # a dangling link or a loop: "exists"
            files.check_output(dest, self.options.force)

    def write(self, dest: str, data: bytes) -> None:
        """``files.write_output``, the atomic no-overwrite write; under ``since`` an identical output of this
        job's own earlier try counts as written."""
        try:
            files.write_output(dest, data, self.options.force)
        except AecError:
            if self.options.since is None or not written_since(dest, data, self.options.since):
                raise

    def load(self, src: str) -> Any:
        raise NotImplementedError

    def prepare(self, src: str, dest: str, get: Callable[[], Any]) -> Any:
        raise NotImplementedError

    def code(self, items: list) -> list[Callable[[], Outcome]]:
        raise NotImplementedError


class Encoder(Coder):
    """The options checked (unless they are) and the model loaded once (``encoding.setup``); each batch of inputs
    coded together on the one encode path (``encoding.encode_images``), each written with what the encoder knew
    of its file (``encoding.Encoded``: nothing is read back for ``-v``)."""

    options: EncodeOptions

    def __init__(self, options: EncodeOptions) -> None:
        super().__init__(options)
        from .encoding import setup

        self.setup = setup(options)
        self.codec = self.setup.codec
        self._batch = batch_size(options.batch, self.codec.device.type == "cuda")
        self.torch_ready()

    @property
    def batch(self) -> int:
        return self._batch

    @property
    def read_ahead(self) -> int:
        return max(2, self._batch)

    def load(self, src: str) -> Any:
        return files.open_image(files.read_bytes(src), files.label(src))

    def prepare(self, src: str, dest: str, get: Callable[[], Any]) -> tuple:
        self.prepare_dest(src, dest)
        return src, dest, get()

    def _writer(self, src: str, dest: str, make: Callable[[], Encoded]) -> Callable[[], Outcome]:
        o = self.options

        def write() -> Outcome:
            done = make()
            size, pixels = len(done.data), done.width * done.height
            bpp = size * 8 / pixels
            if o.max_bytes is not None and not done.fits:
                raise AecError(f"cannot fit the image in {o.max_bytes} bytes: the lowest quality needs {size} bytes")
            if o.target_bpp is not None and bpp > o.target_bpp:
                raise AecError(
                    f"--target-bpp {o.target_bpp:g} not reached: the lowest quality gives {bpp:.4f} bpp "
                    f"({size} bytes); nothing written"
                )
            self.write(dest, done.data)
            summary = (  # the size is after EXIF rotation, as decode gives it
                f"{arrow(src, dest)}: {done.width}x{done.height}, {size} bytes, {bpp:.4f} bpp, quality {done.quality:g}"
            )
            return Outcome(src, dest, size, bpp, done.quality, pixels, summary=summary)

        return write

    def code(self, items: list) -> list[Callable[[], Outcome]]:
        from .encoding import encode_images

        if self.options.searching:  # a search per image, inside its own step so a miss fails that input alone
            return [self._writer(src, dest, partial(self._one, image)) for src, dest, image in items]
        done = encode_images(self.setup, [image for _, _, image in items], self.batch)
        return [self._writer(src, dest, lambda e=e: e) for (src, dest, _), e in zip(items, done, strict=True)]

    def _one(self, image: Any) -> Encoded:
        from .encoding import encode_images

        return encode_images(self.setup, [image])[0]


class Decoder(Coder):
    """Each input opened once (``decoding.open_file``: parsed, its model loaded, checked) in ``prepare``, the
    opened files of a batch decoded together in ``code``: the path ``api.decode`` runs, ``batch`` at a time."""

    options: DecodeOptions

    def __init__(self, options: DecodeOptions) -> None:
        super().__init__(options)
        self.on_gpu = False  # known once a torch model is loaded: files of a torch-free decoder need no device

    @property
    def batch(self) -> int:
        return batch_size(self.options.batch, self.on_gpu)

    def load(self, src: str) -> bytes:
        return files.read_aec(src)

    def prepare(self, src: str, dest: str, get: Callable[[], bytes]) -> tuple:
        from .decoding import open_file

        data = get()  # first: an input that is no .aec file is that, before its output is looked at
        self.prepare_dest(src, dest)
        o = self.options
        item = open_file(data, o.max_pixels, device=o.device)
        f = item.file
        files.check_fits_format(dest, files.output_format(dest, o.suffix), f.width, f.height)
        if item.codec is not None and not isinstance(item.codec.device, str):  # a torch model's
            self.on_gpu = self.on_gpu or item.codec.device.type == "cuda"
            self.torch_ready()
        return src, dest, item, len(data)

    def _writer(self, src: str, dest: str, image, size: int, header) -> Callable[[], Outcome]:
        o = self.options

        def write() -> Outcome:
            fmt = files.output_format(dest, o.suffix)
            out = files.image_bytes(image, dest, fmt, o.out_quality, o.drop_alpha)
            self.write(dest, out)
            lossy = f" at {o.out_quality}" if fmt in files.LOSSY_FORMATS else ""
            summary = (
                f"{arrow(src, dest)}: {image.width}x{image.height} {image.mode}, quality {header.quality:g}, "
                f"{fmt}{lossy}"
            )
            pixels = image.width * image.height
            return Outcome(src, dest, len(out), size * 8 / pixels, header.quality, pixels, summary=summary)

        return write

    def code(self, items: list) -> list[Callable[[], Outcome]]:
        from .decoding import decode_planes, image_from_planes

        planes = decode_planes([item for _, _, item, _ in items], self.batch)
        return [
            self._writer(src, dest, image_from_planes(item.file, p), size, item.file)
            for (src, dest, item, size), p in zip(items, planes, strict=True)
        ]


def _prefetched(srcs: Iterable[str], load: Callable[[str], T], depth: int) -> Iterator[tuple[str, Callable[[], T]]]:
    """Yield (input, get) while the next ``depth`` inputs load in background threads, so reading and
    decoding files overlaps the network (file I/O and Pillow's decoders release the GIL). ``get()``
    returns the loaded value or raises what loading raised, inside the caller's error handling."""
    with ThreadPoolExecutor(max_workers=depth) as pool:
        pending: deque = deque()
        rest = iter(srcs)

        def submit() -> None:
            src = next(rest, None)
            if src is not None:
                pending.append((src, pool.submit(load, src)))

        for _ in range(depth + 1):
            submit()
        while pending:
            src, future = pending.popleft()
            submit()
            yield src, future.result


def run(coder: Coder, pairs: Iterable[tuple[str, str]]) -> Iterator[Outcome]:
    """Code each (input, output) pair, ``coder.batch`` at a time; one ``Outcome`` per input, in order.

    With ``skip_existing`` an input whose output exists is skipped before it is read. A failure is the
    outcome of the inputs it concerns (one failed input of a batch, or all of a batch whose network pass
    failed); the rest still run. Ctrl-C is not a failure: KeyboardInterrupt goes through.
    """
    skip = coder.options.skip_existing
    todo: list[tuple[str, str]] = []
    for src, dest in pairs:
        if skip and files.output_exists(dest):
            yield Outcome(src, dest, skipped=True, summary=f"{arrow(src, dest)}: skipped, the output exists")
        else:
            todo.append((src, dest))
    dests = (dest for _, dest in todo)
    loaded = iter(zip(_prefetched((src for src, _ in todo), coder.load, coder.read_ahead), dests, strict=True))
    for first in loaded:
        started = time.perf_counter()
        ready, taken = [], 0
        for (src, get), dest in itertools.chain([first], loaded):
            taken += 1
            try:
                ready.append((src, dest, coder.prepare(src, dest, get)))
            except Exception as e:  # noqa: BLE001 - one input's failure is its outcome
                yield failure(src, dest, e)
            if taken >= coder.batch:  # read once an input is prepared: a decoder's depends on the model loaded
                break
        if ready:
            yield from _code(coder, ready, started)


def _code(coder: Coder, ready: list[tuple[str, str, Any]], started: float) -> Iterator[Outcome]:
    """The outcomes of a batch of prepared inputs: coded together, each written on its own."""
    try:
        writes = coder.code([item for _, _, item in ready])
    except Exception as e:  # noqa: BLE001 - the batch's inputs fail together, the next batch still runs
        for src, dest, _ in ready:
            yield failure(src, dest, e)
        return
    for (src, dest, _), write in zip(ready, writes, strict=True):
        try:
            done = write()
        except Exception as e:  # noqa: BLE001
            yield failure(src, dest, e)
            continue
        yield Outcome(**{**done.row(), "seconds": time.perf_counter() - started})
