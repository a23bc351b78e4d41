"""Where results live: a local folder, or a folder on any filesystem pyarrow (or fsspec)
knows, given as a URI.  :func:`of` reads every results argument (``run --out``,
``report``, ``compare``); a :class:`Location` does every read and write of a results
or report folder, so the rules below hold in one place.

Accepted:

- a local path (``results/quick``, ``./s3:x``: a local folder whose name has a colon);
- ``file:///abs/path`` (or ``file://localhost/abs/path``): the same local folder;
- a URI pyarrow opens itself: ``s3://``, ``gs://`` (``gcs://``), ``abfs://`` (``abfss://``),
  ``hdfs://`` (``viewfs://``); S3 reads the AWS environment (``AWS_ENDPOINT_URL`` for an
  S3-compatible server) or the URI's query (``?endpoint_override=...&scheme=http``);
- any other scheme fsspec has an implementation for (``memory://``, ``sftp://``, ...).

Refused with one line (:class:`UsageError`, exit 2) and nothing made: a path that looks
like a URI but is not one (``s3:/x``, ``s3:x``), an unknown scheme (``foo://x``),
``file://host/x`` for another host.

Local folders are read and written without following links: files are opened with
``O_NOFOLLOW | O_NONBLOCK`` and ``fstat``-ed, only regular files are read (a FIFO or a
device named like a row is refused, never waited on), and a file's size is checked
against the caller's limit before it is read.  A write goes to a temp file in the same
folder, is ``fsync``-ed and renamed over the name (a link there is replaced, never
written through); it never creates a missing parent folder.

Remote folders: on S3, GCS and Azure one object is one PUT (the store makes it visible
whole or not at all); on other filesystems (HDFS, fsspec's) a write goes to a temp name
and is moved over the name.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from rnnbench.errors import UsageError

# "scheme:" at the start of an argument (RFC 3986 scheme characters)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.S)
PYARROW_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs")
OBJECT_STORES = ("s3", "gs", "gcs", "abfs", "abfss")  # one PUT per object: atomic
TMP_SUFFIX = ".tmp"  # every temp file this module makes: ".<name>.<random>.tmp"


def tmp_name(name: str) -> str:
    """The temp name a write of ``name`` goes through (a hidden ``.tmp`` beside it)."""
    return f".{name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}"


def is_tmp(name: str) -> bool:
    """Whether ``name`` is one of this module's temp files (:func:`tmp_name`)."""
    return bool(re.fullmatch(r"\..+\.[0-9a-f]{12}\.tmp", name))


def _fsspec(scheme: str) -> Any | None:
    """fsspec's implementation class for ``scheme`` (None: fsspec lacks it)."""
    try:
        import fsspec
        from fsspec.registry import known_implementations, registry
    except ImportError:
        return None
    if scheme not in known_implementations and scheme not in registry:
        return None
    try:
        return fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError):
        return None


def of(text: str | os.PathLike[str], field: str = "results") -> Location:
    """The Location an argument names; UsageError (one line, naming ``field``) if none."""
    raw = os.fspath(text)
    if not isinstance(raw, str) or not raw:
        raise UsageError(f"{field}: empty path")
    m = _SCHEME.match(raw)
    if m is None:
        return Location(raw, None, raw)
    scheme, rest = m.group(1).lower(), m.group(2)
    allowed = "a local path, file:///abs/path, or s3://, gs://, abfs://, hdfs:// or an fsspec URI"
    if not rest.startswith("//"):
        raise UsageError(
            f"{field}: {raw!r} looks like a URI but is not one (a URI is {scheme}://...); "
            f"for a local folder with a colon in its name write ./{raw}"
        )
    if scheme == "file":
        host, _, path = rest[2:].partition("/")
        if host not in ("", "localhost"):
            raise UsageError(
                f"{field}: {raw!r}: file:// names this machine only "
                "(file:///abs/path or file://localhost/abs/path)"
            )
        return Location(raw, None, "/" + path)
    if scheme in PYARROW_SCHEMES:
        try:
            fs, path = pafs.FileSystem.from_uri(raw)
        except (ValueError, OSError) as exc:  # ArrowInvalid is a ValueError
            raise UsageError(f"{field}: {raw!r}: {str(exc).splitlines()[0]}") from None
        return Location(raw, fs, path.rstrip("/"), scheme)
    impl = _fsspec(scheme)
    if impl is None:
        raise UsageError(f"{field}: {raw!r}: unknown scheme {scheme}://; allowed: {allowed}")
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    try:
        fsspec_fs = impl()
        path = fsspec_fs._strip_protocol(raw)
    except Exception as exc:  # a filesystem that needs options it was not given
        raise UsageError(f"{field}: {raw!r}: {type(exc).__name__}: {exc}") from None
    return Location(raw, PyFileSystem(FSSpecHandler(fsspec_fs)), str(path).rstrip("/"), scheme)


@dataclass(frozen=True)
class Location:
    """A folder: ``fs`` None for a local one (``path`` a local path), else a pyarrow
    filesystem and the path on it.  ``uri`` is the argument as given (for messages)."""

    uri: str
    fs: Any
    path: str
    scheme: str = "file"

    def __str__(self) -> str:
        return self.uri

    @property
    def local(self) -> bool:
        return self.fs is None

    @property
    def atomic_put(self) -> bool:
        """Whether one write is one object PUT (no temp name needed)."""
        return self.scheme in OBJECT_STORES

    def child(self, *parts: str) -> Location:
        """The folder (or file) ``parts`` below this one."""
        sep = os.sep if self.local else "/"
        uri = self.uri.rstrip("/") + "/" + "/".join(parts)
        return Location(uri, self.fs, sep.join([self.path.rstrip(sep) or sep, *parts]),
                        self.scheme)

    def _p(self, name: str) -> str:
        return self.child(name).path if name else self.path

    # ---------------------------------------------------------------- what is there
    def kind(self, name: str = "") -> str:
        """'file', 'dir', 'link', 'other' or 'missing' (links never followed)."""
        if self.local:
            try:
                mode = os.lstat(self._p(name)).st_mode
            except FileNotFoundError:
                return "missing"
            except NotADirectoryError:
                return "missing"
            if stat.S_ISLNK(mode):
                return "link"
            return "dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"
        info = self.fs.get_file_info(self._p(name))
        return {pafs.FileType.File: "file", pafs.FileType.Directory: "dir",
                pafs.FileType.NotFound: "missing"}.get(info.type, "other")

    def names(self, name: str = "") -> list[str]:
        """The names in a folder (sorted; [] when it is missing)."""
        if self.local:
            try:
                return sorted(os.listdir(self._p(name)))
            except (FileNotFoundError, NotADirectoryError):
                return []
        infos = self.fs.get_file_info(pafs.FileSelector(self._p(name), allow_not_found=True))
        return sorted(i.base_name for i in infos)

    def mtime_ns(self, name: str = "") -> int:
        """When a file or folder last changed (0 where the filesystem does not say)."""
        if self.local:
            return os.lstat(self._p(name)).st_mtime_ns
        info = self.fs.get_file_info(self._p(name))
        return int(info.mtime_ns or 0)

    # ---------------------------------------------------------------- reading
    def read(self, name: str, limit: int) -> bytes:
        """A regular file's bytes; OSError if it is not a regular file (a link, a FIFO,
        a device) or is larger than ``limit`` bytes (checked before reading)."""
        if not self.local:
            info = self.fs.get_file_info(self._p(name))
            if info.type != pafs.FileType.File:
                raise OSError(errno.ENOENT, "not a file")
            if info.size is not None and info.size > limit:
                raise OSError(errno.EFBIG, f"larger than {limit} bytes")
            with self.fs.open_input_stream(self._p(name)) as f:
                data: bytes = f.read(limit + 1)
        else:
            fd = os.open(self._p(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise OSError(errno.EINVAL, "not a regular file")
                if st.st_size > limit:
                    raise OSError(errno.EFBIG, f"larger than {limit} bytes")
                with os.fdopen(fd, "rb", closefd=False) as f:
                    data = f.read(limit + 1)
            finally:
                os.close(fd)
        if len(data) > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes")
        return data

    # ---------------------------------------------------------------- writing
    def write(self, name: str, data: bytes) -> None:
        """Write ``name`` whole or not at all (see the module's docstring); the folder
        must exist (it is never created here)."""
        target = self._p(name)
        if not self.local:
            if self.atomic_put:
                with self.fs.open_output_stream(target) as f:
                    f.write(data)
                return
            tmp = self._p(tmp_name(name))
            try:
                with self.fs.open_output_stream(tmp) as f:
                    f.write(data)
                self.fs.move(tmp, target)
            except BaseException:
                self._drop(tmp)
                raise
            return
        folder = os.path.dirname(target) or "."
        tmp = os.path.join(folder, tmp_name(os.path.basename(target)))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)  # a link at ``target`` is replaced, not followed
        except BaseException:
            self._drop(tmp)
            raise

    def _drop(self, path: str) -> None:
        try:
            if self.local:
                os.unlink(path)
            else:
                self.fs.delete_file(path)
        except OSError:
            pass

    def remove(self, name: str) -> None:
        """Remove a file (gone already is fine)."""
        if self.local:
            try:
                os.unlink(self._p(name))
            except FileNotFoundError:
                pass
        elif self.kind(name) == "file":
            self.fs.delete_file(self._p(name))

    def move(self, name: str, to: str) -> None:
        """Rename a file within this folder (``to`` may be below it)."""
        if self.local:
            os.replace(self._p(name), self._p(to))
        else:
            self.fs.move(self._p(name), self._p(to))

    def make_dir(self, name: str = "", parents: bool = False) -> None:
        """Create a folder (existing is fine; a link in its place is an OSError)."""
        if not self.local:
            self.fs.create_dir(self._p(name), recursive=True)
            return
        path = self._p(name)
        if parents:
            os.makedirs(path, exist_ok=True)
        else:
            try:
                os.mkdir(path)
            except FileExistsError:
                pass
        if self.kind(name) != "dir":
            raise OSError(errno.ENOTDIR, f"{path}: not a folder (a link or a file)")

    def probe(self) -> None:
        """Write and remove a probe file here (OSError when the folder cannot hold one)."""
        name = tmp_name("probe")
        self.write(name, b"")
        self.remove(name)

    def publish(self, staging: Path) -> list[Location]:
        """Copy every file under the local folder ``staging`` here, file by file (each
        written as :meth:`write` does, so a link in the way is replaced); the folders it
        needs are made (a link in place of one is an OSError). Returns what was written."""
        written = []
        for folder, dirs, files in os.walk(staging):
            rel = os.path.relpath(folder, staging)
            parts = [] if rel == "." else rel.split(os.sep)
            here = self.child(*parts) if parts else self
            if parts:
                self.make_dir(os.sep.join(parts) if self.local else "/".join(parts))
            for name in sorted(files):
                here.write(name, Path(folder, name).read_bytes())
                written.append(here.child(name))
            dirs.sort()
        return written


def staging_dir() -> str:
    """A fresh local folder to build something in before :meth:`Location.publish`."""
    return tempfile.mkdtemp(prefix="rnnbench-")
