"""Opening a path beneath a directory, in one step and without following symlinks.

An agent may touch files only under its --allow-path directories. Checking a
path with realpath and opening it by name later is a race: a symlink swapped in
between is followed. Here the kernel resolves and opens together, relative to
an open descriptor of the directory:

- openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS (Linux >= 5.6): any
  ".." that climbs out, any absolute symlink and any symlink at all fails the
  open (EXDEV or ELOOP);
- where the kernel lacks openat2 (ENOSYS), one openat(O_NOFOLLOW) per
  component from the directory's descriptor, refusing ".." outright.

Rules: every function returns a descriptor or raises OSError with the errno
the kernel gave (ELOOP for a symlink, EXDEV for an escape); nothing here names
a policy or a message. Descriptors are O_CLOEXEC.
"""
import ctypes
import errno
import os
import stat

# <linux/openat2.h>
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
# openat2 has one number on every architecture that has it (asm-generic/unistd.h).
SYS_OPENAT2 = 437


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def openat2(dir_fd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """The raw syscall: a descriptor, or OSError (ENOSYS where the kernel lacks it)."""
    how = _OpenHow(flags, mode if flags & (os.O_CREAT | os.O_TMPFILE) else 0, resolve)
    fd = _libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dir_fd), ctypes.c_char_p(os.fsencode(path)),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def _components(rel: str) -> list[str]:
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise OSError(errno.EXDEV, "the path leaves its directory", rel)
    return parts


def open_by_components(dir_fd: int, rel: str, flags: int, mode: int = 0) -> int:
    """The fallback: openat with O_NOFOLLOW one component at a time from dir_fd."""
    parts = _components(rel)
    cur = dir_fd
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cur)
            except NotADirectoryError:
                # O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR; say what it was.
                if stat.S_ISLNK(os.stat(part, dir_fd=cur, follow_symlinks=False).st_mode):
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel) from None
                raise
            if cur != dir_fd:
                os.close(cur)
            cur = nxt
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=cur)
    finally:
        if cur != dir_fd:
            os.close(cur)


def open_beneath(dir_fd: int, rel: str, flags: int, mode: int = 0) -> int:
    """Open rel beneath the directory dir_fd without following any symlink."""
    _components(rel)  # ".." never has a use here; refuse it the same way on every kernel
    try:
        fd = openat2(dir_fd, rel, flags | os.O_CLOEXEC, mode, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)
    except OSError as e:
        if e.errno != errno.ENOSYS:
            raise
        fd = open_by_components(dir_fd, rel, flags, mode)
    if flags & os.O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)  # O_PATH|O_NOFOLLOW opens a trailing symlink itself instead of failing
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
    return fd


def reopen(path_fd: int, flags: int) -> int:
    """A real descriptor for the file an O_PATH descriptor holds (the same inode, not a name)."""
    return os.open(f"/proc/self/fd/{path_fd}", flags | os.O_CLOEXEC)
