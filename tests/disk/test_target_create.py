"""Targets like fio's: --size makes a missing target file; sparse targets need --prefill or --allow-sparse.

Locally through loadgen.disk.target and the CLI, and through a real agent on
127.0.0.1 (`loadgen serve --allow-path`). Sparse files are made with truncate;
a filesystem under tmp_path that does not report holes skips those tests.
"""
import errno
import json
import os
import shutil
import subprocess
from types import SimpleNamespace

import pytest

from loadgen.disk import sweep
from loadgen.disk.target import (create_at, create_beneath, fill_created, open_target, seek_holes,
                            unwritten_extents)
from loadgen.errors import SetupError, UsageError
from loadgen.workload import DiskSpec, parse_disk
from netns import Agent, run_loadgen, write_token

MiB = 1 << 20
SHORT = ["--duration", "1s", "--ramp", "0s", "--quiet"]


def disk_spec(**options):
    return parse_disk(**({"seed": "1", "workers": "1", "direct": False, "duration": "1s"} | options))


def sparse_file(path, layout: list[tuple[str, int]]) -> None:
    """A file of ("data", n) and ("hole", n) runs in order; data is 0x01 bytes."""
    with open(path, "wb") as f:
        for what, n in layout:
            if what == "data":
                f.write(b"\1" * n)
            else:
                f.seek(n, os.SEEK_CUR)
        f.truncate(f.tell())


@pytest.fixture
def holes_reported(tmp_path):
    """Skip unless the filesystem under tmp_path reports a truncated file's hole."""
    probe = tmp_path / "probe"
    sparse_file(probe, [("data", 64 << 10), ("hole", MiB)])
    fd = os.open(probe, os.O_RDONLY)
    try:
        if not seek_holes(fd, (64 << 10) + MiB):
            pytest.skip("the filesystem under tmp_path does not report holes")
    finally:
        os.close(fd)
        probe.unlink()


# ---- creating a missing target file --------------------------------------------------------------

def test_a_missing_target_is_created_at_size_filled_and_kept(tmp_path):
    path = tmp_path / "new.dat"
    target = open_target(disk_spec(target=str(path), size="2m"))
    try:
        assert (target.kind, target.created, target.span_bytes) == ("file", True, 2 * MiB)
        assert target.facts()["target_created"] is True
    finally:
        target.close()
    st = path.stat()
    assert st.st_size == 2 * MiB and st.st_blocks * 512 >= 2 * MiB   # real blocks, not a hole
    data = path.read_bytes()
    assert data.count(0) < len(data) // 2, "a created target holds the native pattern"


def test_a_missing_target_without_size_is_not_found_and_says_how_to_make_it(tmp_path):
    with pytest.raises(UsageError, match="target not found: .*give --size to create it"):
        open_target(disk_spec(target=str(tmp_path / "new.dat")))
    assert list(tmp_path.iterdir()) == []


def test_a_missing_directory_is_not_created(tmp_path):
    with pytest.raises(UsageError, match="target not found.*directory does not exist"):
        open_target(disk_spec(target=str(tmp_path / "no" / "new.dat"), size="1m"))
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_at_the_name_is_refused_not_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere.dat"
    (tmp_path / "new.dat").symlink_to(elsewhere)          # dangling: stat says "not found"
    with pytest.raises(UsageError, match="refusing to create .*new.dat"):
        open_target(disk_spec(target=str(tmp_path / "new.dat"), size="1m"))
    assert not elsewhere.exists()
    assert (tmp_path / "new.dat").is_symlink()


def test_create_at_refuses_anything_at_the_name(tmp_path):
    dir_fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        (tmp_path / "link").symlink_to(tmp_path / "nowhere")
        (tmp_path / "file").write_bytes(b"x")
        for name in ("link", "file"):
            with pytest.raises(FileExistsError):
                create_at(dir_fd, name)
        with pytest.raises(OSError) as e:
            create_at(dir_fd, "a/b")
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(dir_fd)
    assert not (tmp_path / "nowhere").exists()


def test_a_new_target_larger_than_the_free_space_is_refused_and_nothing_is_made(tmp_path):
    with pytest.raises(UsageError, match="new target file does not fit"):
        open_target(disk_spec(target=str(tmp_path / "new.dat"), size="1000t"))
    assert list(tmp_path.iterdir()) == []


def test_a_created_target_that_cannot_be_filled_is_removed(tmp_path, monkeypatch):
    def no_space(fd, extents, **kw):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sweep, "fill", no_space)
    with pytest.raises(SetupError, match="No space left"):
        open_target(disk_spec(target=str(tmp_path / "new.dat"), size="1m"))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_fill_removes_only_the_file_it_made(tmp_path, monkeypatch):
    """If the name was given to another file meanwhile, that file stays."""
    monkeypatch.setattr(sweep, "fill", lambda *a, **kw: (_ for _ in ()).throw(OSError(errno.EIO, "EIO")))
    dir_fd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        fd = create_at(dir_fd, "new.dat")
        os.rename(tmp_path / "new.dat", tmp_path / "moved.dat")
        (tmp_path / "new.dat").write_bytes(b"someone else's")
        with pytest.raises(SetupError):
            fill_created(disk_spec(size="1m"), fd, "new.dat", dir_fd, "new.dat")
    finally:
        os.close(dir_fd)
    assert (tmp_path / "new.dat").read_bytes() == b"someone else's"


def test_a_created_target_has_its_full_size_before_the_fill(tmp_path, monkeypatch, holes_reported):
    """So a fill killed midway (SIGKILL cannot be caught) leaves a sparse file, refused for reads."""
    seen = []

    def killed(fd, extents, **kw):
        seen.append(os.fstat(fd).st_size)
        os.pwrite(fd, b"\1" * MiB, 0)           # the first part of the fill made it to the file
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(sweep, "fill", killed)
    monkeypatch.setattr("loadgen.disk.target.remove_if_ours", lambda *a: None)   # as if killed: nothing cleans up
    path = tmp_path / "new.dat"
    with pytest.raises(SetupError):
        open_target(disk_spec(target=str(path), size="4m"))
    assert seen == [4 * MiB]
    monkeypatch.undo()
    with pytest.raises(UsageError, match="is sparse: 3m of its 4m span is unwritten"):
        open_target(disk_spec(target=str(path)))


def test_create_beneath_makes_the_file_in_a_subdirectory_and_refuses_a_symlinked_directory(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        spec = disk_spec(size="1m")
        fd, dir_fd, name = create_beneath(spec, root_fd, "sub/new.dat")
        target = fill_created(spec, fd, "sub/new.dat", dir_fd, name)
        os.close(dir_fd)
        target.close()
        assert (root / "sub" / "new.dat").stat().st_size == MiB
        with pytest.raises(OSError) as e:
            create_beneath(spec, root_fd, "link/new.dat")
        assert e.value.errno in (errno.ELOOP, errno.ENOTDIR)
    finally:
        os.close(root_fd)
    assert list((tmp_path / "outside").iterdir()) == []


# ---- sparse targets ------------------------------------------------------------------------------

def test_seek_holes_finds_each_hole_within_the_span(tmp_path, holes_reported):
    path = tmp_path / "s"
    sparse_file(path, [("data", MiB), ("hole", 2 * MiB), ("data", MiB), ("hole", MiB)])
    fd = os.open(path, os.O_RDONLY)
    try:
        assert seek_holes(fd, 5 * MiB) == [(MiB, 2 * MiB), (4 * MiB, MiB)]
        assert seek_holes(fd, 2 * MiB) == [(MiB, MiB)]           # cut at the span
        assert seek_holes(fd, MiB) == []
    finally:
        os.close(fd)


@pytest.mark.parametrize("holes, blocks, span, expect", [
    ([(0, 8192)], 0, 8192, ([(0, 8192)], 8192)),         # SEEK_HOLE says where
    ([], 16, 8192, ([], 0)),                              # fully written
    ([], 0, 8192, ([(0, 8192)], 8192)),                   # the generic SEEK_HOLE sees data; no blocks at all
    (None, 8, 8192, ([(0, 8192)], 4096)),                 # SEEK_HOLE cannot say: st_blocks says how much
    (None, 16, 8192, ([], 0)),
])
def test_unwritten_extents_table(monkeypatch, holes, blocks, span, expect):
    monkeypatch.setattr("loadgen.disk.target.seek_holes", lambda fd, span_bytes: holes)
    assert unwritten_extents(-1, SimpleNamespace(st_blocks=blocks), span) == expect


def test_a_sparse_target_is_refused_for_reads_naming_the_file_and_the_unwritten_bytes(tmp_path, holes_reported):
    path = tmp_path / "s"
    sparse_file(path, [("data", MiB), ("hole", 3 * MiB)])
    for rw in ("randread", "read", "randrw"):
        with pytest.raises(UsageError, match=rf"target {path} is sparse: 3m of its 4m span is unwritten"):
            open_target(disk_spec(target=str(path), rw=rw))
    # Writes reach the device anyway: a write-only job is not refused, and says what it found.
    target = open_target(disk_spec(target=str(path), rw="randwrite"))
    try:
        assert target.unwritten_bytes == 3 * MiB and target.prefilled_bytes == 0 and not target.notes
    finally:
        target.close()


def test_allow_sparse_reads_the_holes_and_says_so(tmp_path, holes_reported):
    path = tmp_path / "s"
    sparse_file(path, [("data", MiB), ("hole", 3 * MiB)])
    target = open_target(disk_spec(target=str(path), allow_sparse=True))
    try:
        assert target.unwritten_bytes == 3 * MiB
        assert len(target.notes) == 1 and "unwritten" in target.notes[0] and str(path) in target.notes[0]
    finally:
        target.close()
    fd = os.open(path, os.O_RDONLY)
    try:
        assert seek_holes(fd, 4 * MiB) == [(MiB, 3 * MiB)]      # left as it was
    finally:
        os.close(fd)


def test_prefill_writes_only_the_unwritten_extents(tmp_path, holes_reported):
    path = tmp_path / "s"
    sparse_file(path, [("data", MiB), ("hole", 2 * MiB), ("data", MiB)])
    target = open_target(disk_spec(target=str(path), prefill=True))
    try:
        assert target.prefilled_bytes == 2 * MiB and target.unwritten_bytes == 0
        assert seek_holes(target.fd, 4 * MiB) == []
    finally:
        target.close()
    data = path.read_bytes()
    assert len(data) == 4 * MiB
    assert data[:MiB] == b"\1" * MiB and data[3 * MiB:] == b"\1" * MiB   # the data around is kept
    hole = data[MiB : 3 * MiB]
    assert hole.count(0) < len(hole) // 2, "the holes hold the native pattern now"
    again = open_target(disk_spec(target=str(path)))                      # and reads are accepted
    again.close()


def test_a_sparse_span_cap_looks_only_inside_the_span(tmp_path, holes_reported):
    path = tmp_path / "s"
    sparse_file(path, [("data", 2 * MiB), ("hole", 2 * MiB)])
    target = open_target(disk_spec(target=str(path), size="2m"))     # the hole lies past the span
    try:
        assert target.span_bytes == 2 * MiB and target.unwritten_bytes == 0 and target.prefilled_bytes == 0
    finally:
        target.close()


def test_a_block_device_is_never_sparse(tmp_path):
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup for a loop device")
    image = tmp_path / "img"
    sparse_file(image, [("hole", 8 * MiB)])
    attach = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True)
    if attach.returncode:
        pytest.skip(f"cannot attach a loop device: {attach.stderr.strip()}")
    device = attach.stdout.strip()
    try:
        target = open_target(disk_spec(target=device, prefill=True))
        try:
            assert target.kind == "block" and target.unwritten_bytes == 0 and target.prefilled_bytes == 0
        finally:
            target.close()
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


def test_the_options_travel_to_an_agent_and_into_the_config():
    spec = disk_spec(prefill=True, allow_sparse="true")
    again = DiskSpec.from_wire(spec.to_wire())
    assert (again.prefill, again.allow_sparse) == (True, True)
    assert spec.to_config()["prefill"] is True and spec.to_config()["allow_sparse"] is True
    assert (disk_spec().prefill, disk_spec().allow_sparse) == (False, False)


# ---- the CLI -------------------------------------------------------------------------------------

def local(tmp_path, *args: str, direct_io: bool):
    json_path = tmp_path / "r.json"
    json_path.unlink(missing_ok=True)
    done = run_loadgen(tmp_path, "disk", *SHORT, *([] if direct_io else ["--buffered"]), "--json", str(json_path),
                       *args)
    return done, (json.loads(json_path.read_text()) if json_path.exists() else None)


def test_cli_creates_the_target_and_records_it(tmp_path, direct_io):
    done, doc = local(tmp_path, "--target", "new.dat", "--size", "8m", direct_io=direct_io)
    assert done.returncode == 0, done.stderr
    c = doc["config"]
    assert (c["target_created"], c["target_kind"], c["span_bytes"]) == (True, "file", 8 * MiB)
    assert doc["summary"]["read"]["ops"] > 0
    assert (tmp_path / "new.dat").stat().st_size == 8 * MiB
    done, doc = local(tmp_path, "--target", "new.dat", "--size", "8m", direct_io=direct_io)   # now it exists
    assert done.returncode == 0 and doc["config"]["target_created"] is False


def test_cli_sparse_refusal_prefill_and_allow_sparse(tmp_path, direct_io, holes_reported):
    sparse_file(tmp_path / "s.dat", [("hole", 8 * MiB)])
    done, doc = local(tmp_path, "--target", "s.dat", direct_io=direct_io)
    line = done.error_line(2)
    assert "s.dat is sparse" in line and "8m" in line and "--prefill" in line and doc is None

    done, doc = local(tmp_path, "--target", "s.dat", "--allow-sparse", direct_io=direct_io)
    assert done.returncode == 0, done.stderr
    assert doc["config"]["allow_sparse"] is True and doc["config"]["unwritten_bytes"] == 8 * MiB
    assert any("unwritten" in w for w in doc["warnings"])

    done, doc = local(tmp_path, "--target", "s.dat", "--prefill", direct_io=direct_io)
    assert done.returncode == 0, done.stderr
    c = doc["config"]
    assert (c["prefill"], c["prefilled_bytes"], c["unwritten_bytes"]) == (True, 8 * MiB, 0)
    assert doc["summary"]["read"]["ops"] > 0

    done, doc = local(tmp_path, "--target", "s.dat", direct_io=direct_io)     # filled: accepted as it is
    assert done.returncode == 0, done.stderr
    assert doc["config"]["prefilled_bytes"] == 0


# ---- through a real agent ------------------------------------------------------------------------

@pytest.fixture
def served(tmp_path):
    """(agent, token, allowed directory): `loadgen serve` on 127.0.0.1 allowing one directory."""
    token = write_token(tmp_path / "token")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    agent = Agent(tmp_path, "127.0.0.1:0", "--token-file", str(token), "--allow-path", str(allowed), name="agent")
    yield agent, token, allowed
    agent.stop()


def remote(tmp_path, served, *args: str, direct_io: bool):
    agent, token, _ = served
    json_path = tmp_path / "d.json"
    json_path.unlink(missing_ok=True)
    done = run_loadgen(tmp_path, "disk", "--on", agent.address, "--token-file", str(token), *SHORT,
                       *([] if direct_io else ["--buffered"]), "--json", str(json_path), *args)
    return done, (json.loads(json_path.read_text()) if json_path.exists() else None)


def test_the_readme_disk_on_example_creates_the_target_on_the_agent(tmp_path, served, direct_io):
    _, _, allowed = served
    done, doc = remote(tmp_path, served, "--target", str(allowed / "test.dat"), "--size", "8m", direct_io=direct_io)
    assert done.returncode == 0, done.stderr
    c = doc["config"]
    assert (c["target_created"], c["target_kind"], c["span_bytes"]) == (True, "file", 8 * MiB)
    assert doc["summary"]["read"]["ops"] > 0
    st = (allowed / "test.dat").stat()
    assert st.st_size == 8 * MiB and st.st_blocks * 512 >= 8 * MiB     # kept, and written
    done, doc = remote(tmp_path, served, "--target", str(allowed / "test.dat"), direct_io=direct_io)
    assert done.returncode == 0 and doc["config"]["target_created"] is False


def test_an_agent_refuses_a_symlink_planted_at_the_name(tmp_path, served, direct_io):
    agent, _, allowed = served
    outside = tmp_path / "outside.dat"
    (allowed / "test.dat").symlink_to(outside)
    done, doc = remote(tmp_path, served, "--target", str(allowed / "test.dat"), "--size", "8m", direct_io=direct_io)
    assert "symlink" in done.error_line(1) and doc is None
    assert not outside.exists() and (allowed / "test.dat").is_symlink()
    assert agent.alive()


def test_an_agent_refuses_a_new_target_that_does_not_fit_and_leaves_nothing(tmp_path, served, direct_io):
    _, _, allowed = served
    done, _ = remote(tmp_path, served, "--target", str(allowed / "test.dat"), "--size", "1000t", direct_io=direct_io)
    assert "does not fit" in done.error_line(2)
    assert list(allowed.iterdir()) == []


def test_an_agent_refuses_a_sparse_target_and_prefills_it_when_asked(tmp_path, served, direct_io, holes_reported):
    _, _, allowed = served
    sparse_file(allowed / "s.dat", [("data", MiB), ("hole", 7 * MiB)])
    done, doc = remote(tmp_path, served, "--target", str(allowed / "s.dat"), direct_io=direct_io)
    assert "is sparse" in done.error_line(2) and doc is None
    done, doc = remote(tmp_path, served, "--target", str(allowed / "s.dat"), "--allow-sparse", direct_io=direct_io)
    assert done.returncode == 0, done.stderr
    assert doc["config"]["unwritten_bytes"] == 7 * MiB and any("unwritten" in w for w in doc["warnings"])
    done, doc = remote(tmp_path, served, "--target", str(allowed / "s.dat"), "--prefill", direct_io=direct_io)
    assert done.returncode == 0, done.stderr
    assert doc["config"]["prefilled_bytes"] == 7 * MiB and doc["summary"]["read"]["ops"] > 0
