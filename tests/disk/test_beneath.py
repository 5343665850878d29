"""loadgen.disk.beneath: opening beneath a directory without following symlinks, with openat2 and without.

Every case runs twice: through openat2, and through the per-component fallback
that kernels without openat2 get (forced by making openat2 say ENOSYS).
"""
import errno
import os
import stat

import pytest

from loadgen.disk import beneath


@pytest.fixture(params=["openat2", "fallback"])
def opener(request, monkeypatch):
    if request.param == "fallback":
        def no_openat2(*args, **kwargs):
            raise OSError(errno.ENOSYS, "no openat2")

        monkeypatch.setattr(beneath, "openat2", no_openat2)
    else:
        try:
            os.close(beneath.openat2(os.open("/", os.O_PATH), ".", os.O_PATH))
        except OSError as e:
            if e.errno == errno.ENOSYS:
                pytest.skip("this kernel has no openat2 (Linux >= 5.6)")
            raise
    return beneath.open_beneath


@pytest.fixture
def tree(tmp_path):
    """root/ holding a file, a subdirectory, and symlinks inside and out; outside/ beside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "f").write_bytes(b"inside")
    (root / "sub" / "g").write_bytes(b"deeper")
    (outside / "secret").write_bytes(b"outside")
    (root / "to_secret").symlink_to(outside / "secret")           # absolute, pointing out
    (root / "to_f").symlink_to("f")                               # relative, pointing in
    (root / "to_outside_dir").symlink_to(outside)                 # a directory component
    (root / "to_sub").symlink_to("sub")
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def read_all(fd: int) -> bytes:
    try:
        return os.pread(fd, 100, 0)
    finally:
        os.close(fd)


@pytest.mark.parametrize("rel, content", [("f", b"inside"), ("sub/g", b"deeper"), ("./sub//g", b"deeper")])
def test_files_beneath_open(opener, tree, rel, content):
    assert read_all(opener(tree, rel, os.O_RDONLY)) == content


@pytest.mark.parametrize("rel, err", [
    ("to_secret", errno.ELOOP),                # a symlink out
    ("to_f", errno.ELOOP),                     # even a symlink that stays inside
    ("to_outside_dir/secret", errno.ELOOP),    # a symlinked directory on the way
    ("to_sub/g", errno.ELOOP),
    ("../outside/secret", errno.EXDEV),        # climbing out
    ("sub/../f", errno.EXDEV),                 # ".." is refused even where it stays inside
    ("", errno.EXDEV),
    ("missing", errno.ENOENT),
])
@pytest.mark.parametrize("flags", [os.O_RDONLY, os.O_RDWR, os.O_PATH], ids=["rdonly", "rdwr", "path"])
def test_symlinks_and_escapes_are_refused(opener, tree, rel, err, flags):
    with pytest.raises(OSError) as info:
        os.close(opener(tree, rel, flags))
    assert info.value.errno == err


def test_create_exclusive_beneath(opener, tree, tmp_path):
    fd = opener(tree, "new", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    assert stat.S_IMODE(os.stat(tmp_path / "root" / "new").st_mode) == 0o600
    with pytest.raises(FileExistsError):
        opener(tree, "new", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    with pytest.raises(OSError) as info:      # a planted symlink is never created through
        opener(tree, "to_secret", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    assert info.value.errno in (errno.EEXIST, errno.ELOOP)
    assert (tmp_path / "outside" / "secret").read_bytes() == b"outside"


def test_descriptors_are_close_on_exec(opener, tree):
    fd = opener(tree, "f", os.O_RDONLY)
    try:
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)


def test_reopen_gives_the_same_file_with_new_flags(tree, tmp_path):
    pinned = beneath.open_beneath(tree, "f", os.O_PATH)
    try:
        fd = beneath.reopen(pinned, os.O_RDWR)
    finally:
        os.close(pinned)
    try:
        os.pwrite(fd, b"X", 0)
    finally:
        os.close(fd)
    assert (tmp_path / "root" / "f").read_bytes() == b"Xnside"
