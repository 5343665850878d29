"""--verify and `loadgen disk verify`: crc32c, block headers, inline checks, the read-back, refusals.

A run knows what each block holds when it wrote it, or when it filled the target itself with
stamped headers (a created or temporary target under --verify); other reads are counted as
unchecked, never as checked. `loadgen disk verify` needs no map: every header must match its place.
"""
import asyncio
import json
import os

import pytest

from loadgen.disk import job as disk_job
from loadgen.errors import UsageError
from loadgen.results import documents
from loadgen.run import native
from loadgen.workload import parse_disk
from netns import run_loadgen

BS = 4096


def test_crc32c_gives_the_standard_check_value_by_every_implementation():
    assert native.crc32c(b"123456789") == 0xE3069283          # RFC 3720 B.4, the CRC catalogue's check
    assert native.crc32c(b"123456789", impl="table") == 0xE3069283
    hw = native.crc32c(b"123456789", impl="sse4.2")
    assert hw in (None, 0xE3069283)                           # None: this CPU has no SSE4.2


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 4095, 4096, 100_003])
def test_crc32c_table_and_hardware_agree_at_every_length_and_alignment(n):
    data = os.urandom(n + 3)
    for skew in range(3):
        part = data[skew:skew + n]
        table = native.crc32c(part, impl="table")
        assert native.crc32c(part) == table
        hw = native.crc32c(part, impl="sse4.2")
        assert hw in (None, table)
    # continuing a crc over a split equals one crc over the whole
    assert native.crc32c(data[n // 2:], native.crc32c(data[:n // 2])) == native.crc32c(data)


def _stamped(offset=8192, seed=7, gen=3) -> bytearray:
    block = bytearray(os.urandom(BS))
    native.verify_stamp(block, offset, seed, gen)
    return block


@pytest.mark.parametrize("change, reasons", [
    (lambda b: None, []),
    (lambda b: b.__setitem__(100, b[100] ^ 1), ["crc32c"]),
    (lambda b: b.__setitem__(slice(0, BS), os.urandom(BS)), ["no header"]),
])
def test_a_block_check_names_what_changed(change, reasons):
    block = _stamped()
    change(block)
    assert native.verify_check(bytes(block), 8192, seed=7, generation=3)["reasons"] == reasons


def test_a_header_of_another_place_seed_or_generation_is_bad():
    block = bytes(_stamped(offset=8192, seed=7, gen=3))
    assert native.verify_check(block, 4096, seed=7, generation=3)["reasons"] == ["offset"]
    assert native.verify_check(block, 8192, seed=8, generation=3)["reasons"] == ["seed"]
    assert native.verify_check(block, 8192, seed=7, generation=4)["reasons"] == ["generation"]
    # without a map: any seed and generation, but the header must still fit its place and bytes
    found = native.verify_check(block, 8192)
    assert found["reasons"] == [] and found["found"]["generation"] == 3 and found["found"]["seed"] == 7


def _overwrite(path, offset):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, os.urandom(BS), offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def test_a_block_overwritten_between_a_verified_write_and_the_read_back_is_named(tmp_path):
    """The done-when: a clean run reports 0 bad, one overwritten 4k block is reported at its offset."""
    r = run_loadgen(tmp_path, "disk", "--rw", "randwrite", "--verify", "--seed", "7", "--target", "f.dat",
                    "--size", "1m", "--duration", "1s", "--ramp", "0s", "--workers", "2", "--json", "w.json")
    assert r.returncode == 0, r.stderr
    assert "verify: 256 blocks checked, 0 bad" in r.stdout
    verify = documents.load_result(tmp_path / "w.json")["summary"]["verify"]   # and it fits the schema
    # the created file was filled with stamped headers, so the read-back knows every block
    assert verify == {"mode": "read-back", "checked": 256, "bad": 0, "unchecked": 0, "mismatches": []}

    clean = run_loadgen(tmp_path, "disk", "verify", "--target", "f.dat", "--bs", "4k", "--seed", "7")
    assert clean.returncode == 0 and "verify: 256 blocks checked, 0 bad" in clean.stdout, clean.stdout + clean.stderr

    _overwrite(tmp_path / "f.dat", 37 * BS)
    bad = run_loadgen(tmp_path, "disk", "verify", "--target", "f.dat", "--bs", "4k", "--seed", "7")
    assert bad.returncode == 1
    assert "verify: 256 blocks checked, 1 bad" in bad.stdout
    assert f"bad block at offset {37 * BS}: no header" in bad.stdout

    other_seed = run_loadgen(tmp_path, "disk", "verify", "--target", "f.dat", "--bs", "4k", "--seed", "8", "-q")
    assert other_seed.returncode == 1 and "256 bad" in other_seed.stdout


def _run_corrupted(tmp_path, monkeypatch, corrupt_offset, **options):
    """A --verify run on a created target, one block overwritten after its stamped fill and before the run."""
    original = disk_job.prepare

    def prepare_then_corrupt(spec, *a, **kw):
        job = original(spec, *a, **kw)
        _overwrite(job.target.path, corrupt_offset)
        return job

    monkeypatch.setattr(disk_job, "prepare", prepare_then_corrupt)
    spec = parse_disk(**({"target": str(tmp_path / "c.dat"), "size": "64k", "verify": True, "seed": "5",
                          "workers": "1", "duration": "1s", "ramp": "0s", "interval": "1s"} | options))
    doc = asyncio.run(disk_job.run_disk(spec))
    documents.check(json.loads(json.dumps(doc)), "urn:loadgen:schema:result", "the document")   # mismatches fit the schema
    return doc["summary"]["verify"]


def test_an_inline_read_of_a_corrupted_block_is_bad_at_its_offset(tmp_path, monkeypatch):
    verify = _run_corrupted(tmp_path, monkeypatch, 5 * BS, rw="read")
    assert verify["mode"] == "inline"
    assert verify["bad"] >= 1 and verify["checked"] > verify["bad"]
    assert {m["offset_bytes"] for m in verify["mismatches"]} == {5 * BS}
    m = verify["mismatches"][0]
    assert m["reasons"] == ["no header"] and m["expected"]["generation"] == 1 and m["expected"]["seed"] == 5


def test_the_read_back_finds_a_corrupted_block_the_run_never_rewrote(tmp_path, monkeypatch):
    """Paced at 10 IOPS for 1 s, a sequential writer never reaches block 14 of 16: its fill is what the
    read-back expects there."""
    verify = _run_corrupted(tmp_path, monkeypatch, 14 * BS, rw="write", iops="10", qd="1")
    assert verify["mode"] == "read-back"
    assert verify["checked"] == 16 and verify["bad"] == 1 and verify["unchecked"] == 0
    assert verify["mismatches"][0]["offset_bytes"] == 14 * BS


def test_reads_of_blocks_the_run_never_wrote_are_not_counted_as_checked(tmp_path):
    """An existing target written without --verify: nothing is known, so nothing is checked."""
    (tmp_path / "plain.dat").write_bytes(os.urandom(16 * BS))
    r = run_loadgen(tmp_path, "disk", "--rw", "randread", "--verify", "--target", "plain.dat", "--duration", "1s",
                    "--ramp", "0s", "--workers", "1", "--json", "r.json")
    assert r.returncode == 0, r.stderr
    v = json.loads((tmp_path / "r.json").read_text())["summary"]["verify"]
    assert v["checked"] == 0 and v["bad"] == 0 and v["unchecked"] > 0
    assert "verify: 0 blocks checked, 0 bad (" in r.stdout


def test_verify_refusals_are_one_line_and_exit_2(tmp_path):
    small = run_loadgen(tmp_path, "disk", "--verify", "--buffered", "--bs", "32", "--duration", "1s")
    assert small.returncode == 2 and small.stderr.startswith("loadgen: --verify needs blocks of at least")
    os.truncate(tmp_path / "huge.dat", 0) if (tmp_path / "huge.dat").exists() else None
    with open(tmp_path / "huge.dat", "wb") as f:
        f.truncate(100 << 30)    # sparse: 100 GiB at bs 512 is over the map's bound
    big = run_loadgen(tmp_path, "disk", "--verify", "--rw", "write", "--bs", "512", "--target", "huge.dat",
                      "--duration", "1s")
    assert big.returncode == 2 and "--verify keeps a generation per block" in big.stderr
    assert len(big.stderr.strip().splitlines()) == 1
    few = run_loadgen(tmp_path, "disk", "--verify", "--rw", "write", "--size", "8k", "--workers", "3",
                      "--duration", "1s")
    assert few.returncode == 2 and "2 blocks for 3 workers" in few.stderr
    made = run_loadgen(tmp_path, "disk", "verify", "--target", "new.dat", "--size", "1m")
    assert made.returncode == 2 and made.stderr == "loadgen: target not found: new.dat\n"
    assert not (tmp_path / "new.dat").exists()      # verify never makes the file it is asked to check
    (tmp_path / "some.dat").write_bytes(os.urandom(16 * BS))
    for args, message in ((["--bs", "32"], "bs 32"), (["--seed", "x"], "seed"),
                          (["--qd", "0"], "qd"), (["--bs", "4k", "--target", "nothere.dat"], "target not found")):
        r = run_loadgen(tmp_path, "disk", "verify", "--target", "some.dat", *args)
        assert r.returncode == 2 and r.stderr.startswith("loadgen: ") and message in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_check_verify_map_bounds():
    spec = parse_disk(verify=True, bs="4k", workers="2", duration="1s")
    disk_job.check_verify_map(spec, 8 * BS, spec.common.workers)
    with pytest.raises(UsageError, match="1 blocks for 2 workers"):
        disk_job.check_verify_map(spec, BS, spec.common.workers)
    with pytest.raises(UsageError, match="more than"):
        disk_job.check_verify_map(spec, (native.limit("verify_max_blocks") + 1) * BS, spec.common.workers)


def test_a_map_over_half_the_available_memory_is_refused(monkeypatch):
    spec = parse_disk(verify=True, bs="4k", workers="1", duration="1s")
    monkeypatch.setattr(disk_job, "mem_available_bytes", lambda: 16 * 1024)
    disk_job.check_verify_map(spec, 2048 * BS, 1)                 # 8 KiB of map: half of 16 KiB
    with pytest.raises(UsageError, match="of map, more than half"):
        disk_job.check_verify_map(spec, 2049 * BS, spec.common.workers)


def test_a_paced_run_on_fewer_blocks_than_its_queue_waits_for_busy_blocks_and_checks_every_read(tmp_path):
    """16 blocks at qd 32, open loop: ops whose block has an I/O in flight wait for it, none is lost."""
    r = run_loadgen(tmp_path, "disk", "--rw", "randrw", "--verify", "--size", "64k", "--qd", "32", "--iops", "2k",
                    "--duration", "1s", "--ramp", "0s", "--workers", "1", "--json", "p.json")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "p.json").read_text())
    v = doc["summary"]["verify"]
    # a temporary target under --verify is filled stamped: every read is of a known block
    assert v["bad"] == 0 and v["unchecked"] == 0 and v["checked"] >= doc["summary"]["read"]["ops"] > 0
