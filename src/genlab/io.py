"""Atomic, durable files: JSON, weights through safetensors, state through torch.load(weights_only=True).

Every write goes to a temporary file in the same directory, is flushed to the disk (fsync), renamed
over the target, and the directory entry is flushed too; so a crash or a power cut at any moment
leaves either the previous file or the new one, never a half-written one. New files get the mode
any program's new files get (0666 less the user's umask). A full disk ends the write with a
one-line GenlabError, the previous file intact.

`DirLock` claims a directory for one process at a time (a run directory while it trains).
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .errors import DiskFull, GenlabError

# our temporary files: ".NAME.XXXXXXXX.tmp" (8 random characters; tempfile.mkstemp's names also match)
TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class _File:
    """A file being written that remembers the OS error a write met: torch and safetensors report
    it wrapped in their own exceptions, without the errno."""

    def __init__(self, fd: int, path: Path):
        self.raw, self.path, self.error = os.fdopen(fd, "wb"), path, None

    def write(self, data) -> int:
        try:
            return self._write(data)
        except OSError as e:
            self.error = e
            raise

    def _write(self, data) -> int:  # the OS boundary (a test puts a full disk here)
        return self.raw.write(data)

    def flush(self) -> None:
        try:
            self.raw.flush()
        except OSError as e:
            self.error = e
            raise


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new file beside `path`, created with mode 0666: the umask applies as to any new file
    (tempfile.mkstemp would make it 0600, and the rename would keep that)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (a rename is durable only once its directory is)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a platform or file system that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def disk_error(exc: BaseException, recorded: OSError | None = None) -> OSError | None:
    """The out-of-space error behind `exc` (ENOSPC, EDQUOT, EFBIG), if that is what it is: raised
    directly, recorded by `_File`, chained, or named in a wrapped message ("os error 28")."""
    seen = [recorded] if recorded is not None else []
    e = exc
    while e is not None and len(seen) < 20:
        seen.append(e)
        e = e.__cause__ or e.__context__
    for e in seen:
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            return e
    for e in seen:
        m = re.search(r"os error (\d+)", str(e))
        if m and int(m.group(1)) in DISK_FULL:
            n = int(m.group(1))
            return OSError(n, os.strerror(n))
    return None


def disk_full_message(path: Path, error: OSError) -> str:
    try:
        free = shutil.disk_usage(path.parent if path.parent.exists() else ".").free
        room = f", {human_size(free)} free"
    except OSError:
        room = ""
    return f"cannot write {path}: {error.strerror or os.strerror(error.errno)}{room}"


def human_size(n: float) -> str:
    """A byte count as people read it (bytes, KB, MB, GB; powers of 1024)."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def _atomic(path: Path, write, *, by_path: bool = False) -> Path:
    """Write `path` through `write(file)` (or `write(tmp_path)` with `by_path`), durably and atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    mode = os.fstat(fd).st_mode & 0o7777  # 0666 less the umask, as the kernel applied it
    f = _File(fd, tmp)
    try:
        try:
            if by_path:
                f.raw.close()
                write(tmp)
                os.chmod(tmp, mode)  # a writer may replace the file (safetensors' is 0600)
                with open(tmp, "rb") as r:
                    os.fsync(r.fileno())
            else:
                write(f)
                f.flush()
                os.fsync(f.raw.fileno())
        finally:
            f.raw.close()
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        full = disk_error(e, f.error)
        if full is not None:
            raise DiskFull(disk_full_message(path, full) + f" (the previous {path.name}, if any, is intact)",
                           full.errno) from e
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_json(path, obj) -> Path:
    data = (json.dumps(obj, indent=2, default=_json_default) + "\n").encode("utf-8")
    return _atomic(path, lambda f: f.write(data))


def atomic_write_bytes(path, data: bytes) -> Path:
    return _atomic(path, lambda f: f.write(data))


def _json_default(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot write {type(o).__name__} to JSON")


def save_weights(state: dict, path) -> Path:
    """safetensors file of a state dict (tensors made contiguous and unshared)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}

    def write(tmp):
        save_file(tensors, str(tmp))
        with open(tmp, "rb") as f:  # safetensors can lose a failed final write: check the length
            head = f.read(8)
        want = 8 + int.from_bytes(head, "little") + sum(t.numel() * t.element_size() for t in tensors.values())
        got = os.path.getsize(tmp)
        if len(head) < 8 or got != want:
            if shutil.disk_usage(Path(tmp).parent).free < want:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise GenlabError(f"cannot write {path}: it came out {got} bytes long instead of {want} (is the disk "
                              "failing?); the previous file, if any, is intact")
    return _atomic(path, write, by_path=True)


_PICKLE = "a Python pickle"
_MAGIC = ((b"\x80", _PICKLE), (b"PK\x03\x04", "a PyTorch/zip file"), (b"\x93NUMPY", "a NumPy .npy file"))


def _magic(head: bytes) -> str | None:
    """What a file that should hold JSON or safetensors is instead, by its first bytes (None: no idea)."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    return None


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception's message on one line (the user-facing errors are one line)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def read_json(path, what: str = "JSON") -> object:
    """A JSON file (parsed with json, never anything that runs code), or a one-line GenlabError saying why not:
    missing, not text (e.g. a pickle put in its place), or not valid JSON."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise GenlabError(f"{path}: no such file") from None
    except OSError as e:
        raise GenlabError(f"{path}: cannot read ({e.strerror})") from None
    other = _magic(raw[:8])
    if other is not None:
        raise GenlabError(f"{path}: refused: it is {other}, not {what} (genlab never unpickles a file: it could "
                          "run code)")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise GenlabError(f"{path}: not {what} (binary content)") from None
    except json.JSONDecodeError as e:
        raise GenlabError(f"{path}: not valid {what} ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise GenlabError(f"{path}: not valid {what} (nested too deeply)") from None


def load_weights(path) -> dict:
    """Weights from a safetensors file (tensors only: the format cannot hold code)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as e:
        raise GenlabError(f"{path}: cannot read weights ({e.strerror})") from None
    other = _magic(head) if head[8:9] != b"{" else None  # safetensors: 8 bytes of header length, then '{'
    if other is not None:
        raise GenlabError(f"{path}: refused: it is {other}, not safetensors (genlab loads weights only from "
                          "safetensors, which cannot hold code)")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise GenlabError(f"{path}: cannot read weights, the file is truncated or corrupt ({first_line(e)})") from None


def save_state(state: dict, path) -> Path:
    return _atomic(path, lambda f: torch.save(state, f))


def load_state(path) -> dict:
    """Training state; `weights_only=True`, so no pickled code is ever executed."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GenlabError(f"{path}: no checkpoint to resume from") from None
    except Exception as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e).lower():
            raise GenlabError(f"{path}: refused: it holds Python objects other than tensors and numbers (a pickle "
                              "that could run code; genlab loads checkpoints with torch.load(weights_only=True))") from None
        raise GenlabError(f"{path}: unreadable checkpoint, truncated or corrupt ({first_line(e)})") from None
    if not isinstance(state, dict):
        raise GenlabError(f"{path}: not a genlab checkpoint (holds {type(state).__name__}, not a mapping)")
    return state


def temp_of(name: str) -> str | None:
    """The target's name if `name` is one of our temporary files (".NAME.XXXXXXXX.tmp"), else None."""
    return name[1:-13] if TEMP_NAME.match(name) else None


def remove_stale_temps(directory, owned) -> list[Path]:
    """Delete the temporary files that writes of `owned(relative_target_path) -> bool` files left in
    `directory` and its folders (a killed writer's). Call it only while holding the directory's
    `DirLock`, and own only files no other command writes there: their temporary files may be live."""
    removed = []
    directory = Path(directory)
    for root, _, files in os.walk(directory):
        for name in files:
            target = temp_of(name)
            p = Path(root) / name
            if target is not None and owned(p.with_name(target).relative_to(directory)):
                try:
                    p.unlink()
                    removed.append(p)
                except FileNotFoundError:
                    pass
    return removed


class DirTaken(GenlabError):
    """The directory is another process's (locked), or already holds something of its own."""


class DirLock:
    """One process at a time in a directory: `DIR/.lock`, held with flock(2) until `release()`.

    The kernel drops a flock when its holder exits, however it exits (SIGKILL, power cut aside), so a
    lock file a dead process left is free: the next claim takes it over, and nothing ever has to judge
    whether a recorded pid is still alive. The file names its holder (pid, host, time) for the message
    the loser sees. Release deletes the file while still holding the lock; a claim that locked a file
    deleted meanwhile notices (its inode is no longer the path's) and tries again.
    """

    NAME = ".lock"

    def __init__(self, directory):
        self.directory = Path(directory)
        self.path = self.directory / self.NAME
        self.fd = None

    def acquire(self) -> "DirLock":
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise GenlabError(f"cannot create {self.directory}: {e.strerror}") from None
        try:
            import fcntl
        except ImportError:  # not POSIX (Windows)
            warnings.warn(f"{self.directory}: no file locks on this platform; make sure no other process "
                          "writes here", stacklevel=2)
            return self
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            except FileNotFoundError:  # a failed run removed the empty directory it had made: again
                self.directory.mkdir(parents=True, exist_ok=True)
                continue
            except OSError as e:
                raise GenlabError(f"cannot write in {self.directory}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise DirTaken(f"{self.directory} is in use by another genlab process "
                                      f"({self.holder() or 'holder unknown'}); wait for it to finish, "
                                      "or choose another directory") from None
                warnings.warn(f"{self.directory}: this file system cannot lock files ({e.strerror}); "
                              "make sure no other process writes here", stacklevel=2)
                return self
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # its holder released (deleted) the file between our open and our lock
        info = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self.fd = fd
        return self

    def holder(self, wait: float = 1.0) -> str:
        """Who holds the lock, as its file says (the holder writes it just after locking: wait for it)."""
        t0 = time.monotonic()
        while True:
            try:
                text = self.path.read_text().strip()
            except OSError:
                text = ""
            if text or time.monotonic() - t0 > wait:
                return text
            time.sleep(0.01)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
