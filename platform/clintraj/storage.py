"""Where inputs and run storage live: a local folder, or a URI (s3://, gs://, abfs://, file://, ...).

Jobs accept either for their data flags. A URI input is staged in: copied once into a
local cache folder (the code reads local files), then reused. Ray Train/Tune storage is
passed on as a URI, since Ray reads and writes s3:// and friends itself through
`pyarrow.fs`; a local storage folder becomes an absolute path, as Ray requires.

Filesystems come from `pyarrow.fs.FileSystem.from_uri`, so credentials and endpoints are
found the usual way (AWS_* variables or an instance role, AWS_ENDPOINT_URL, GOOGLE_* ...).
Logs and errors name a URI without its user info or query string, which may hold keys.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pyarrow import fs as pafs

log = logging.getLogger(__name__)

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PARTIAL = ".partial-"
# pyarrow filesystem type names -> the URI scheme that from_uri maps back to them
_SCHEMES = {"s3": "s3", "gcs": "gs", "abfs": "abfs", "hdfs": "hdfs"}


class StorageError(OSError):
    """A location could not be read or written; the message says which and what to check."""


def is_uri(location: str | os.PathLike) -> bool:
    """True for `scheme://...` strings; False for local paths (str or Path)."""
    return isinstance(location, str) and bool(_URI.match(location))


def redact(location: str | os.PathLike) -> str:
    """A location for logs and errors: a URI without user info (s3://KEY:SECRET@bucket) or query
    string, which may hold keys; a local path as is."""
    if not is_uri(location):
        return str(location)
    parts = urlsplit(location)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))


def storage_path(location: str | os.PathLike) -> str:
    """What to pass as Ray's `RunConfig(storage_path=...)`: a URI unchanged, a local path absolute."""
    return location if is_uri(location) else str(Path(location).expanduser().resolve())


def join(location: str | os.PathLike, *parts: str) -> str | Path:
    """`location / parts...`: a URI stays a URI (query string kept at the end), a local path a Path."""
    if not is_uri(location):
        return Path(location, *parts)
    base, separator, query = str(location).partition("?")
    return "/".join([base.rstrip("/"), *parts]) + separator + query


def stage_root(storage: str | os.PathLike | None, stage: str, workdir: str | os.PathLike) -> str | Path:
    """Where one stage's Ray Train/Tune state goes: <storage>/<stage> when run storage is set
    (e.g. $CLINTRAJ_STORAGE, a cluster's bucket), else the stage's own local work folder."""
    return join(storage, stage) if storage else Path(workdir)


def uri_of(filesystem: pafs.FileSystem, path: str) -> str:
    """A location others can open from a (filesystem, path) pair such as a Ray Checkpoint's:
    the local path, or `scheme://path` for object stores."""
    if isinstance(filesystem, pafs.LocalFileSystem):
        return path
    scheme = _SCHEMES.get(filesystem.type_name)
    if scheme is None:
        raise StorageError(f"cannot name a location on a {filesystem.type_name!r} filesystem as a URI: {path}")
    return f"{scheme}://{path}"


def _resolve(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    if not is_uri(location):
        return pafs.LocalFileSystem(), str(Path(location).expanduser().resolve())
    try:
        return pafs.FileSystem.from_uri(location)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... depending on the scheme
        raise _error("cannot open", location, exc) from exc


def _error(action: str, location: str | os.PathLike, exc: BaseException) -> StorageError:
    return StorageError(f"{action} {redact(location)} ({type(exc).__name__}). Check that the location exists and that "
                        "this machine has credentials for it (AWS_* variables, an instance role or "
                        "workload identity) and the right endpoint (AWS_ENDPOINT_URL for non-AWS S3).")


def read_text(location: str | os.PathLike) -> str | None:
    """A small text file's content, or None when it does not exist."""
    filesystem, path = _resolve(location)
    try:
        if filesystem.get_file_info(path).type != pafs.FileType.File:
            return None
        with filesystem.open_input_stream(path) as stream:
            return stream.read().decode()
    except Exception as exc:
        raise _error("cannot read", location, exc) from exc


def write_text(location: str | os.PathLike, text: str) -> None:
    """Write a small text file, creating its folder (object stores have none to create)."""
    filesystem, path = _resolve(location)
    try:
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with filesystem.open_output_stream(path) as stream:
            stream.write(text.encode())
    except Exception as exc:
        raise _error("cannot write", location, exc) from exc


def list_dirs(location: str | os.PathLike, prefix: str = "") -> list[str | Path]:
    """The folders directly under `location` whose names start with `prefix`, as locations."""
    filesystem, path = _resolve(location)
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except Exception as exc:
        raise _error("cannot list", location, exc) from exc
    return [join(location, info.base_name) for info in infos
            if info.type == pafs.FileType.Directory and info.base_name.startswith(prefix)]


def upload(folder: str | os.PathLike, location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """Copy a local folder's files to `location` (a folder or a URI); the copy's (filesystem, path),
    as a Ray `Checkpoint` takes them."""
    filesystem, path = _resolve(location)
    try:
        filesystem.create_dir(path, recursive=True)
        pafs.copy_files(str(Path(folder).resolve()), path, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=filesystem)
    except Exception as exc:
        raise _error("cannot write", location, exc) from exc
    return filesystem, path


def remove(location: str | os.PathLike) -> None:
    """Delete a folder and what it holds; nothing when it is not there."""
    filesystem, path = _resolve(location)
    try:
        if filesystem.get_file_info(path).type == pafs.FileType.Directory:
            filesystem.delete_dir(path)
    except Exception as exc:
        raise _error("cannot delete", location, exc) from exc


def cache_folder(uri: str, cache_root: str | os.PathLike) -> Path:
    """The local folder a URI is staged into: its last path component plus a hash of the whole URI
    (two buckets with the same folder name get different caches)."""
    name = urlsplit(uri).path.rstrip("/").rsplit("/", 1)[-1] or "root"
    digest = hashlib.sha256(uri.encode()).hexdigest()[:12]
    return Path(cache_root).expanduser().resolve() / f"{name}-{digest}"


def stage_in(location: str | os.PathLike, cache_root: str | os.PathLike) -> Path:
    """A local path to read `location` from.

    A local path is returned resolved. A URI (a folder or one file) is copied into
    `cache_folder(uri, cache_root)` once: into a temporary sibling first, renamed when the copy
    is complete, so an interrupted copy is never taken for a finished one; later calls reuse it.
    Returns the folder, or for a one-file URI the file inside it.
    """
    if not is_uri(location):
        return Path(location).expanduser().resolve()
    target = cache_folder(location, cache_root)
    filesystem, path = _resolve(location)
    source = _inspect(filesystem, path, location)
    staged = target / source.base_name if source.type == pafs.FileType.File else target
    if target.is_dir():
        log.info("reusing %s, staged before at %s", redact(location), target)
        return staged
    _discard_partials(target)
    partial = target.with_name(f"{target.name}{_PARTIAL}{uuid.uuid4().hex[:8]}")
    files, size = _size(filesystem, source)
    log.info("staging %s in: %d file(s), %.1f MB, to %s", redact(location), files, size / 1e6, target)
    try:
        destination = partial / source.base_name if source.type == pafs.FileType.File else partial
        partial.mkdir(parents=True)
        pafs.copy_files(path, str(destination), source_filesystem=filesystem,
                        destination_filesystem=pafs.LocalFileSystem())
    except Exception as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise _error("cannot copy", location, exc) from exc
    _publish(partial, target)
    log.info("staged %s: %d file(s), %.1f MB", redact(location), files, size / 1e6)
    return staged


def _inspect(filesystem: pafs.FileSystem, path: str, location: str) -> pafs.FileInfo:
    try:
        info = filesystem.get_file_info(path)
    except Exception as exc:
        raise _error("cannot reach", location, exc) from exc
    if info.type == pafs.FileType.NotFound:
        raise StorageError(f"nothing at {redact(location)}: check the bucket and path, and that this "
                           "machine's credentials may list it")
    return info


def _size(filesystem: pafs.FileSystem, source: pafs.FileInfo) -> tuple[int, int]:
    """(files, bytes) under a folder, or of one file."""
    if source.type == pafs.FileType.File:
        return 1, source.size or 0
    infos = [i for i in filesystem.get_file_info(pafs.FileSelector(source.path, recursive=True))
             if i.type == pafs.FileType.File]
    return len(infos), sum(i.size or 0 for i in infos)


def _discard_partials(target: Path) -> None:
    """Remove what interrupted copies into `target` left behind (said, not silent)."""
    for leftover in target.parent.glob(f"{target.name}{_PARTIAL}*"):
        log.warning("removing %s, left by an interrupted copy", leftover)
        shutil.rmtree(leftover, ignore_errors=True)


def _publish(partial: Path, target: Path) -> None:
    """Rename the finished copy into place; if another process finished first, keep theirs."""
    try:
        partial.rename(target)
    except OSError:
        if not target.is_dir():
            raise
        log.info("%s was staged meanwhile by another process; keeping it", target)
        shutil.rmtree(partial, ignore_errors=True)


@contextmanager
def replaced_when_done(target: str | os.PathLike, what: str = "the folder"):
    """Yield a staging sibling of the local folder `target` to write into: when the block ends
    without an error it replaces `target`, else it is removed. So `target` is complete or as it was
    (absent, or the previous complete one), and no staging folder outlives its step. A failed write
    (a full disk) becomes an error that says where, and what was kept."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield staging
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        kept = f"{what} there is unchanged" if target.exists() else "nothing was written there"
        raise OSError(error.errno, f"writing {what} {target} failed ({error.strerror or error}); {kept}") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replaced = target.with_name(f".{target.name}.replaced-{staging.name.rsplit('-', 1)[-1]}")
    if target.exists():
        target.rename(replaced)
    staging.rename(target)
    shutil.rmtree(replaced, ignore_errors=True)
