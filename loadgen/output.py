"""Where loadgen's outputs go: result documents (--json) and streams (the .hlog).

A destination is one of three kinds, decided from what is at the path when it
is written:
- a descriptor: "-" (stdout), or a name for a descriptor this process holds
  (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N). It is written through
  that descriptor at its current offset, so a shell's redirection keeps what was
  printed before, the way a shell treats these names itself.
- in place: a path that exists and is not a regular file or a directory (a
  character device such as /dev/null, a FIFO). It is opened for writing without
  O_CREAT or O_TRUNC and is never replaced or renamed over.
- a file: anything else, existing or new. Symlinks are followed to the file
  they name, and the file is written beside that target.

A document is written whole or not at all: into a temporary file beside the
target made by mkstemp (O_CREAT|O_EXCL|O_NOFOLLOW under a random name, so
nothing planted at a guessable name can redirect it), fsynced and renamed over
the target. An older file stays intact until the new one is complete, keeps its
mode and owner, and a failed write removes its temporary file.

Errors are OSErrors that carry the path the user gave; callers decide what they
mean. A document that cannot be written goes to fallback(): a new file in
$TMPDIR or /tmp, whose name the caller prints, or else nowhere (the caller
prints it on stderr). A stream records its first error, and the CLI asks
failures() when choosing the exit code: an output that failed means the run
did not fully succeed.
"""
import errno as errno_mod
import os
import re
import stat
import tempfile

STDOUT = "-"
_DESCRIPTOR_NAMES = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
_DESCRIPTOR_PATH = re.compile(r"^(?:/dev/fd|/proc/self/fd|/proc/(\d+)/fd)/(\d+)$")

_failures: list[str] = []


def describe(e: OSError) -> str:
    """An OSError as "No space left on device (ENOSPC)"."""
    name = errno_mod.errorcode.get(e.errno or 0)
    return f"{e.strerror or e}" + (f" ({name})" if name else "")


def failures() -> list[str]:
    """Every stream error this process met, in order (empty: every output succeeded)."""
    return list(_failures)


def descriptor_of(path: str) -> int | None:
    """The open descriptor a path names ("-" is stdout), or None for an ordinary path."""
    if path == STDOUT:
        return 1
    fd = _DESCRIPTOR_NAMES.get(path)
    if fd is None:
        m = _DESCRIPTOR_PATH.match(path)
        if not m or (m.group(1) and int(m.group(1)) != os.getpid()):
            return None
        fd = int(m.group(2))
    try:
        os.fstat(fd)
    except OSError:
        return None   # not open here: an ordinary path, which will fail as one
    return fd


def is_stdout(path: str) -> bool:
    return descriptor_of(path) == 1


def _error(e: OSError, path: str) -> OSError:
    """The same error, naming the path the user gave rather than a resolved or temporary one."""
    return OSError(e.errno, e.strerror, path)


def _in_place(path: str) -> bool:
    """Whether path exists and is something other than a regular file; a directory is an error."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno_mod.EISDIR, os.strerror(errno_mod.EISDIR), path)
    return not stat.S_ISREG(st.st_mode)


def check(path: str) -> None:
    """Raise the OSError a write to path would surely meet, before any work is done:
    a missing or unwritable directory, or a directory where the file should be."""
    if descriptor_of(path) is not None:
        return
    try:
        if _in_place(path):
            return
        directory = os.path.dirname(os.path.realpath(path))
        if not os.path.isdir(directory):
            raise FileNotFoundError(errno_mod.ENOENT, os.strerror(errno_mod.ENOENT), path)
        if not os.access(directory, os.W_OK):
            raise PermissionError(errno_mod.EACCES, os.strerror(errno_mod.EACCES), path)
    except OSError as e:
        raise _error(e, path) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_document(path: str, text: str) -> None:
    """Write a whole document to path, by the rules above; OSError names path."""
    data = text.encode()
    fd = descriptor_of(path)
    try:
        if fd is not None:
            _write_all(fd, data)
            return
        if _in_place(path):
            _write_in_place(path, data)
            return
        _replace(os.path.realpath(path), data)
    except OSError as e:
        raise _error(e, path) from None


def _write_in_place(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            # Swapped for a regular file since the look: overwriting it in place would
            # leave the old tail behind, so replace it like any file.
            os.close(fd)
            fd = -1
            _replace(os.path.realpath(path), data)
            return
        _write_all(fd, data)
    finally:
        if fd >= 0:
            os.close(fd)


def _replace(target: str, data: bytes) -> None:
    directory, name = os.path.split(target)
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory or ".")
    try:
        _write_all(fd, data)
        if old is None:
            os.fchmod(fd, 0o666 & ~_umask())   # what open(..., "w") would have made
        else:
            if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(fd, old.st_uid, old.st_gid)   # before fchmod: chown clears setuid bits
                except PermissionError:
                    pass   # not root: the file becomes ours, as any editor's save would
            os.fchmod(fd, stat.S_IMODE(old.st_mode))
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, target)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory or ".")


def _fsync_directory(directory: str) -> None:
    """Make the rename durable; a filesystem that cannot fsync a directory loses nothing here."""
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def fallback(text: str, suffix: str) -> str | None:
    """Put a document that could not go where it was asked into a new file in $TMPDIR
    or /tmp (mode 0600); returns its path, or None if neither would take it."""
    data = text.encode()
    for directory in dict.fromkeys([os.environ.get("TMPDIR") or "/tmp", "/tmp"]):
        try:
            fd, path = tempfile.mkstemp(prefix="loadgen-", suffix=suffix, dir=directory)
        except OSError:
            continue
        try:
            _write_all(fd, data)
            os.fsync(fd)
        except OSError:
            os.unlink(path)
            continue
        finally:
            os.close(fd)
        return path
    return None


class Stream:
    """An output written piece by piece as a run goes (the .hlog).

    Each write() goes to the kernel at once, so a reader (tail -f, a FIFO)
    sees every interval as it ends and an interrupted run leaves every interval
    written so far. A file is therefore written at its own name, not renamed
    into place at the end: a log is a stream, and an atomic replace would hide
    it until the run is over and leave nothing but a temporary file behind a
    killed run. It is created with O_NOFOLLOW after symlinks in the path were
    followed, so a symlink swapped in at the last component is refused rather
    than followed. The first error stops the stream and is kept in `error`.
    """

    def __init__(self, path: str, fd: int, regular: bool) -> None:
        self.path, self._fd, self._regular = path, fd, regular
        self.error: str | None = None

    @classmethod
    def open(cls, path: str) -> "Stream":
        """Open path for writing by the rules above; OSError names path."""
        fd = descriptor_of(path)
        try:
            if fd is not None:
                return cls(path, os.dup(fd), regular=False)
            if _in_place(path):
                fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
            else:
                fd = os.open(os.path.realpath(path),
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise _error(e, path) from None
        return cls(path, fd, regular=stat.S_ISREG(os.fstat(fd).st_mode))

    @property
    def ok(self) -> bool:
        return self.error is None and self._fd >= 0

    def write(self, text: str) -> None:
        """Write all of text now; on failure the stream stops and OSError (naming the path) is raised."""
        if not self.ok:
            return
        try:
            _write_all(self._fd, text.encode())
        except OSError as e:
            self._fail(e)
            raise _error(e, self.path) from None

    def close(self) -> None:
        """Flush a file to the disk and close; OSError (naming the path) if that fails."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            try:
                if self._regular and self.error is None:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            self._fail(e)
            raise _error(e, self.path) from None

    def _fail(self, e: OSError) -> None:
        self.error = describe(e)
        _failures.append(f"{self.path}: {self.error}")
