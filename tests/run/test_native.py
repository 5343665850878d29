"""native/ through loadgen.run.native: the HDR recorder and the offset generator.

The recorder must put every value where the `hdrhistogram` package would, so
that percentiles computed from native counts equal the package's own. The
offset generator must stay inside the span, aligned to bs, and (random) cover
it evenly or (sequential) walk each worker's own slice in order.
"""
import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from loadgen.results import histogram
from loadgen.run import native

HIGHEST_NS = 3_600_000_000_000
PERCENTILES = [0.0, 0.1, 1.0, 10.0, 25.0, 33.3, 50.0, 66.6, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99,
               99.999, 100.0]
EDGE_NS = [0, 1, 2, 3, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 1_000_000, 10**9, 10 * 10**9, HIGHEST_NS]
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


def log_uniform_ns(n: int, seed: int) -> list[int]:
    """n values spread evenly in log between 1 ns and 10 s."""
    rng = np.random.default_rng(seed)
    return [int(v) for v in np.exp(rng.uniform(0.0, np.log(10e9), n))]


def package_histogram() -> HdrHistogram:
    return HdrHistogram(1, 3600 * 10**9, 3)


def test_counts_len_matches_the_package():
    assert native.hdr_counts_len() == package_histogram().counts_len == 33792


@pytest.mark.parametrize("seed", [1, 2])
def test_recorder_agrees_with_hdrhistogram(seed):
    values = log_uniform_ns(20_000, seed) + EDGE_NS
    counts = np.zeros(native.hdr_counts_len(), dtype=np.uint64)
    ref = package_histogram()
    for v in values:
        native.hdr_record(counts, v)
        assert ref.record_value(v)

    ours = histogram.from_counts(counts)
    assert int(counts.sum()) == len(values)
    assert ours.get_total_count() == ref.get_total_count() == len(values)
    assert ours.get_min_value() == ref.get_min_value() == 0
    assert ours.get_max_value() == ref.get_max_value() == ref.get_highest_equivalent_value(HIGHEST_NS)
    assert ours.get_mean_value() == ref.get_mean_value()
    assert [ours.get_value_at_percentile(p) for p in PERCENTILES] == [ref.get_value_at_percentile(p) for p in PERCENTILES]
    assert np.array_equal(counts, np.ctypeslib.as_array(ref.counts))
    # the JSON summary's arithmetic (numpy) agrees with the package too
    summary = histogram.summarize_counts(counts)
    assert summary["mean"] == ref.get_mean_value()
    assert [summary[k] for k in ("min", "p50", "p90", "p99", "p99.9", "p99.99", "max", "count")] == [
        ref.get_min_value(), *(ref.get_value_at_percentile(p) for p in (50, 90, 99, 99.9, 99.99)),
        ref.get_max_value(), ref.get_total_count()]


def test_recorder_agrees_without_zero():
    # With no 0 recorded, min comes from the lowest non-empty bucket rather than counts[0].
    values = log_uniform_ns(2_000, 3) + [7, 2049]
    counts = np.zeros(native.hdr_counts_len(), dtype=np.uint64)
    ref = package_histogram()
    for v in values:
        native.hdr_record(counts, v)
        ref.record_value(v)
    ours = histogram.from_counts(counts)
    assert ours.get_min_value() == ref.get_min_value() == min(values)
    assert ours.get_max_value() == ref.get_max_value()


def test_index_agrees_with_hdrhistogram():
    ref = package_histogram()
    L = native.lib()
    rng = np.random.default_rng(4)
    values = sorted(set(EDGE_NS + log_uniform_ns(50_000, 5)
                        + [int(v) for v in rng.integers(0, HIGHEST_NS, 5_000, dtype=np.int64)]
                        + [(1 << k) + d for k in range(1, 41) for d in (-1, 0, 1)]))
    mismatches = [(v, L.lg_hdr_index(v), ref._counts_index_for(v))
                  for v in values if L.lg_hdr_index(v) != ref._counts_index_for(v)]
    assert mismatches == []


@pytest.mark.parametrize("value_ns, clamped_ns", [(-1, 0), (-10**12, 0), (HIGHEST_NS + 1, HIGHEST_NS),
                                                  (2**62, HIGHEST_NS)])
def test_index_clamps_out_of_range_values(value_ns, clamped_ns):
    L = native.lib()
    assert L.lg_hdr_index(value_ns) == L.lg_hdr_index(clamped_ns)
    counts = np.zeros(native.hdr_counts_len(), dtype=np.uint64)
    native.hdr_record(counts, value_ns)
    assert counts[L.lg_hdr_index(clamped_ns)] == 1 and counts.sum() == 1


def disk_config(bs_bytes: int, span_bytes: int, workers: int = 1, sequential: bool = False,
                seed: int = 12345) -> native.DiskConfig:
    return native.DiskConfig(fd=-1, workers=workers, qd=1, bs_bytes=bs_bytes, sequential=int(sequential),
                             span_bytes=span_bytes, seed=seed)


SPANS = [
    # (bs, span, workers)
    (4 * KiB, 16 * MiB, 1),
    (4 * KiB, 16 * MiB, 3),
    (512, 1 * MiB, 2),
    (4 * KiB, 10 * 4 * KiB + 100, 2),      # span not a multiple of bs
    (4 * KiB, 4 * KiB, 1),                 # a single block
    (4 * KiB, 2 * 4 * KiB, 4),             # fewer blocks than workers
    (128 * KiB, 1 * GiB, 4),
    (1 * MiB, 1 << 40, 2),                 # 1 TiB
    (3000, 1 * MiB, 3),                    # buffered I/O allows any bs
]


@pytest.mark.parametrize("sequential", [False, True], ids=["random", "sequential"])
@pytest.mark.parametrize("bs, span, workers", SPANS)
def test_offsets_in_range_and_aligned(bs, span, workers, sequential):
    cfg = disk_config(bs, span, workers, sequential)
    for worker in range(workers):
        offsets = native.disk_offsets(cfg, worker, 4096)
        assert offsets.dtype == np.uint64 and offsets.shape == (4096,)
        assert np.all(offsets % bs == 0), f"worker {worker}: unaligned offsets"
        assert np.all(offsets + bs <= span), f"worker {worker}: offset past the span, max {offsets.max()}"


def test_single_block_span_always_offset_zero():
    assert native.disk_offsets(disk_config(4 * KiB, 4 * KiB + 4095), 0, 100).tolist() == [0] * 100


def test_random_offsets_cover_the_span_evenly():
    bs, span, buckets, n = 4 * KiB, 64 * MiB, 64, 256_000
    blocks = native.disk_offsets(disk_config(bs, span, seed=99), 0, n) // bs
    observed = np.bincount((blocks * buckets // (span // bs)).astype(np.int64), minlength=buckets)
    expected = n / buckets
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    # 63 degrees of freedom: mean 63, sd ~11; 150 is ~8 sd, and the seed is fixed.
    assert chi2 < 150, f"chi-square {chi2:.1f} over {buckets} buckets: {observed.tolist()}"
    assert blocks.min() < (span // bs) // 100 and blocks.max() > (span // bs) * 99 // 100


def test_random_offsets_are_seeded_per_worker():
    cfg = disk_config(4 * KiB, 1 * GiB, workers=2, seed=7)
    w0, w1 = native.disk_offsets(cfg, 0, 1000), native.disk_offsets(cfg, 1, 1000)
    assert np.array_equal(w0, native.disk_offsets(cfg, 0, 1000))          # reproducible
    assert np.count_nonzero(w0 == w1) < 10                                  # workers differ
    other_seed = native.disk_offsets(disk_config(4 * KiB, 1 * GiB, workers=2, seed=8), 0, 1000)
    assert np.count_nonzero(w0 == other_seed) < 10


@pytest.mark.parametrize("total_blocks, workers", [(10, 3), (4096, 1), (4096, 4), (7, 7), (100, 6)])
def test_sequential_workers_walk_their_own_slices_and_wrap(total_blocks, workers):
    bs = 4 * KiB
    cfg = disk_config(bs, total_blocks * bs, workers, sequential=True)
    seen = []
    for worker in range(workers):
        first = total_blocks * worker // workers
        length = total_blocks * (worker + 1) // workers - first
        blocks = native.disk_offsets(cfg, worker, 2 * length + 3) // bs
        expected = [first + i % length for i in range(2 * length + 3)]
        assert blocks.tolist() == expected, f"worker {worker}"
        seen.extend(expected[:length])
    # The slices partition the span: every block belongs to exactly one worker.
    assert sorted(seen) == list(range(total_blocks))


def test_sequential_with_more_workers_than_blocks():
    # 2 blocks, 4 workers: slices of workers 1 and 3 hold one block each; workers 0
    # and 2 get an empty slice and fall back to walking the whole span.
    bs = 4 * KiB
    cfg = disk_config(bs, 2 * bs, workers=4, sequential=True)
    walks = [(native.disk_offsets(cfg, worker, 6) // bs).tolist() for worker in range(4)]
    assert walks == [[0, 1, 0, 1, 0, 1], [0] * 6, [0, 1, 0, 1, 0, 1], [1] * 6]


@pytest.mark.parametrize("changes", [
    {"bs_bytes": 0},
    {"span_bytes": 100},         # less than one block
    {"workers": 0},
])
def test_offsets_reject_bad_configs(changes):
    cfg = disk_config(4 * KiB, 1 * MiB, workers=2)
    for name, value in changes.items():
        setattr(cfg, name, value)
    with pytest.raises(OSError) as info:
        native.disk_offsets(cfg, 0, 10)
    assert info.value.errno == 22


@pytest.mark.parametrize("worker", [-1, 2])
def test_offsets_reject_a_worker_outside_the_run(worker):
    with pytest.raises(OSError) as info:
        native.disk_offsets(disk_config(4 * KiB, 1 * MiB, workers=2), worker, 10)
    assert info.value.errno == 22
