/*
 * loadgen.h: the whole ABI that the Python side (loadgen/native.py) sees.
 *
 * Vocabulary:
 *   run      a set of worker threads started together, one per core, pinned.
 *   worker   owns its stats record; it is the only writer of it.
 *   stats    cumulative counters, per-errno failure counts and HDR count arrays.
 *            The controller reads them while the worker runs and takes
 *            differences between snapshots; it never locks or pauses a worker.
 *   *_ns     CLOCK_MONOTONIC nanoseconds (Python's time.monotonic_ns()).
 *
 * Rules: every function returns >= 0 or -errno; nothing here prints or exits.
 * Counter and histogram names are exported as strings so that Python builds
 * its view from the library rather than from a hand-kept mirror.
 */
#ifndef LOADGEN_H
#define LOADGEN_H

#include <stdint.h>

#define LG_ABI_VERSION 12

/* Only lg_* names leave the library; everything else is hidden (-fvisibility=hidden). */
#define LG_API __attribute__((visibility("default")))

/* HdrHistogram's layout for 1 ns .. 1 h at 3 significant digits:
 * sub_bucket_count 2048, bucket_count 32, counts_len (32 + 1) * 1024. */
#define LG_HDR_LOWEST_NS 1
#define LG_HDR_HIGHEST_NS 3600000000000LL
#define LG_HDR_SIGFIGS 3
#define LG_HDR_COUNTS_LEN 33792

/* Failures are counted per errno; larger errnos land in the last slot. */
#define LG_ERRNO_SLOTS 256

enum lg_counter {
	LG_CTR_OPS_READ,	/* completed, in the measured window */
	LG_CTR_OPS_WRITE,
	LG_CTR_BYTES_READ,
	LG_CTR_BYTES_WRITE,
	LG_CTR_ERRORS,		/* failed ops in the measured window */
	LG_CTR_WARMUP_OPS,	/* completed before ramp_end_ns, not in results */
	LG_CTR_LATE_OPS,	/* started more than one slot behind schedule */
	LG_CTR_LAG_MAX_NS,	/* largest start-minus-scheduled time */
	LG_CTR_LAG_SUM_NS,
	LG_CTR_STATE,		/* enum lg_state */
	LG_CTR_SETUP_ERRNO,	/* errno that stopped the worker at setup, or 0 */
	/* net: a sender's received/duplicated/reordered count echoes, a receiver's arrivals */
	LG_CTR_SENT,		/* datagrams the kernel accepted, scheduled in the window */
	LG_CTR_SENT_BYTES,	/* UDP payload bytes of those */
	LG_CTR_REFUSED,		/* sends that failed with ECONNREFUSED: no listener */
	LG_CTR_RECEIVED,	/* loadgen datagrams scheduled in the window, duplicates included */
	LG_CTR_RECEIVED_BYTES,
	LG_CTR_DUPLICATED,	/* a sequence number seen before */
	LG_CTR_REORDERED,	/* arrived after a later sequence number of its flow */
	LG_CTR_TOO_OLD,		/* too far behind to tell late from duplicate */
	LG_CTR_FOREIGN,		/* datagrams without this run's magic and tag */
	LG_CTR_LATE,		/* echoes back after the timeout: counted lost, not timed */
	LG_CTR_SKIPPED,		/* sequence numbers jumped over; minus reordered: holes left */
	LG_CTR_UNSENT,		/* scheduled in the window, never sent: the sender fell too far behind */
	/* how the worker paced (set once at start, see pace.h) */
	LG_CTR_PACE_TOLERANCE_NS, /* ops due within this of now share a batch: the measured wake-up cost */
	LG_CTR_BUSY_POLL,	/* 1: spun on the clock (busy_poll); 0: slept in the kernel */
	LG_CTR_CPU,		/* the CPU the worker ran on once pinned */
	LG_CTR_PACE_WINDOW_NS,	/* sender: ops due within this went ahead in one batch; receiver: its sleep between drains */
	LG_CTR_EARLY_MAX_NS,	/* largest scheduled-minus-start time of an op sent ahead of its time */
	LG_CTR_EARLY_SUM_NS,
	LG_CTR_KERNEL_STAMPED,	/* arrivals timed by the kernel's receive stamp, not loadgen's read */
	LG_CTR_GSO_SENT,	/* of LG_CTR_SENT, those sent in UDP GSO runs */
	LG_CTR_SOCKET_DROPS,	/* a receiver's socket dropped this many, its buffer full (SO_RXQ_OVFL, as of the last arrival) */
	LG_CTR_DRAINED_OPS,	/* disk: completed at or after the stop, not in results (they reached the device) */
	/* disk --verify and the sweeps (verify.h): every completed read of a block whose content is known */
	LG_CTR_VERIFY_CHECKED,	/* blocks whose header and crc32c were checked */
	LG_CTR_VERIFY_BAD,	/* of those, blocks that did not match */
	LG_CTR_VERIFY_UNCHECKED, /* reads of blocks this run never wrote; failed writes; written blocks never read back */
	/* disk io_uring workers: the ring (set once at setup, but ENTERS) */
	LG_CTR_ENTERS,		/* io_uring_enter calls made in the measured window */
	LG_CTR_RING_FLAGS,	/* the IORING_SETUP_* flags the kernel accepted */
	LG_CTR_RING_REGISTERED,	/* LG_REGISTERED_* bits: what the kernel let the worker register */
	LG_CTR_SQ_TID,		/* the ring's SQ thread (iou-sqp-TID of the worker), 0: none found */
	LG_CTR_SQ_LAST_CPU,	/* the CPU it last ran on, read at the end of the measured window */
	LG_CTR_SQ_CPU_NS,	/* its utime + stime from ring setup to then */
	LG_CTR_RING_FEATURES,	/* the IORING_FEAT_* bits the kernel offers */
	LG_CTR_BATCH_WAITS,	/* closed loop: waits in the window that had a batch wait (disk.c) */
	LG_CTR_BATCH_WAIT_SUM_NS, /* their batch waits, summed */
	LG_CTR_COUNT
};

enum lg_state { LG_STATE_STARTING, LG_STATE_RUNNING, LG_STATE_DONE, LG_STATE_FAILED };

/* Per op class (read, write) a latency and a service histogram. */
enum lg_hist {
	LG_HIST_LATENCY_READ,	/* completion - scheduled time (or submission, if earlier) */
	LG_HIST_LATENCY_WRITE,
	LG_HIST_SERVICE_READ,	/* completion - actual submission */
	LG_HIST_SERVICE_WRITE,
	LG_HIST_LATENCY_PACKET,	/* sender: echo return - scheduled send; receiver: arrival - scheduled */
	LG_HIST_SERVICE_PACKET,	/* sender: echo return - actual send; receiver: arrival - actual send */
	LG_HIST_KERNEL_RTT_PACKET, /* echo: the kernel's receive stamp of the return - actual send */
	LG_HIST_USER_DELAY_PACKET, /* echo: loadgen reading the return - the kernel's receive stamp */
	LG_HIST_COUNT
};

/*
 * The header at the start of every block a --verify run or a stamped sweep
 * writes, little-endian: the block's own offset, the run's seed, the
 * generation (1: written by a fill, then counting the worker's writes), the
 * block's size, and the crc32c (Castagnoli) of the whole block taken with the
 * crc32c field zeroed. A reader that knows nothing of the run can still check
 * magic, offset, size and crc (and the seed, if given): lg_verify_check.
 */
#define LG_VERIFY_MAGIC 0x4b4c4256u	/* "VBLK" on disk */
struct lg_block_header {
	uint32_t magic;
	uint32_t crc32c;
	uint64_t offset_bytes;
	uint64_t seed;
	uint64_t generation;
	uint32_t block_bytes;
	uint32_t reserved;
};

/* Why a block failed its check: bits of lg_verify_mismatch.reasons. */
enum lg_verify_reason {
	LG_VERIFY_BAD_MAGIC = 1,	/* no header: never written by a verify run, or overwritten */
	LG_VERIFY_BAD_CRC = 2,
	LG_VERIFY_BAD_OFFSET = 4,	/* a header of another block: a misplaced write */
	LG_VERIFY_BAD_SEED = 8,
	LG_VERIFY_BAD_GENERATION = 16,	/* an older (or other) write than the last one: a lost write */
	LG_VERIFY_BAD_SIZE = 32,
	LG_VERIFY_SHORT_READ = 64,
};

/* One bad block as a worker found it: expected holds what it should read (its
 * crc32c: what the block's bytes hash to), found what it read. */
struct lg_verify_mismatch {
	uint64_t offset_bytes;
	uint64_t reasons;	/* enum lg_verify_reason bits; 0: an unused record */
	struct lg_block_header expected;
	struct lg_block_header found;
};

#define LG_VERIFY_KEPT 8	/* mismatches each worker keeps in full; all are counted */

struct lg_worker_stats {
	uint64_t counters[LG_CTR_COUNT];
	uint64_t errno_counts[LG_ERRNO_SLOTS];
	uint64_t hist[LG_HIST_COUNT][LG_HDR_COUNTS_LEN];
	/* the first LG_VERIFY_KEPT bad blocks, after the histograms so the words before keep their places */
	struct lg_verify_mismatch verify_kept[LG_VERIFY_KEPT];
};

enum lg_engine {
	LG_ENGINE_IO_URING,
	LG_ENGINE_PSYNC,
	LG_ENGINE_NVME,		/* NVMe passthrough on /dev/ngXnY: IORING_OP_URING_CMD (nvme.h) */
};

/* LG_CTR_RING_REGISTERED's bits */
#define LG_REGISTERED_RING 1u	/* the ring fd (IORING_REGISTER_RING_FDS, Linux >= 5.18) */
#define LG_REGISTERED_FILE 2u	/* the target (IOSQE_FIXED_FILE) */
#define LG_REGISTERED_BUFFERS 4u	/* the I/O buffers (READ_FIXED/WRITE_FIXED) */

#define LG_SQ_CPU_ANY (-1)	/* sq_cpu: the SQ thread is not pinned */

struct lg_disk_config {
	int32_t fd;		/* opened by the caller with the wanted O_DIRECT */
	int32_t engine;		/* enum lg_engine */
	uint32_t workers;
	uint32_t qd;		/* I/Os in flight per worker (io_uring) */
	uint32_t bs_bytes;
	uint32_t read_pct;	/* 100 read, 0 write, else a random mix */
	uint32_t sequential;	/* 1: each worker walks its own slice in order */
	uint32_t busy_poll;	/* 1: spin between ops and poll completions instead of sleeping */
	uint64_t span_bytes;	/* offsets fall in [0, span_bytes - bs_bytes] */
	uint64_t rate_ops_per_s; /* 0: closed loop at qd; else the total open-loop rate */
	int64_t start_ns;	/* the schedule's origin */
	int64_t ramp_end_ns;	/* completions before this are warm-up */
	int64_t end_ns;		/* no op starts at or after this */
	uint64_t seed;
	const int32_t *cpus;	/* workers entries: the CPU to pin to, or -1 */
	uint32_t nvme_nsid;	/* LG_ENGINE_NVME: the namespace (NVME_IOCTL_ID) */
	uint32_t nvme_lba_shift; /* LG_ENGINE_NVME: log2 of its LBA size; bs and offsets are whole LBAs */
	/* --verify (verify.h): writes carry block headers, reads of known blocks are checked, and
	 * a write-only run reads back every block it wrote after the end. Each worker then owns a
	 * slice, random or not, and keeps a generation per block of it (LG_VERIFY_MAX_BLOCKS). */
	uint32_t verify;
	uint32_t verify_filled;	/* 1: the span holds generation-1 headers of seed (a stamped fill) */
	/* io_uring only. Closed loop: queue SQEs once batch_submit slots are free, and
	 * wait in one enter for batch_complete completions (and for enough to free
	 * batch_submit slots); paced runs ignore both (see disk.c). 1 .. qd each. */
	uint32_t batch_submit;
	uint32_t batch_complete;
	uint32_t poll;		/* 1: IORING_SETUP_IOPOLL (O_DIRECT on a device with poll queues) */
	uint32_t sqpoll;	/* 1: IORING_SETUP_SQPOLL: a kernel thread submits */
	int32_t sq_cpu;		/* sqpoll: the SQ thread's CPU (IORING_SETUP_SQ_AFF), or LG_SQ_CPU_ANY */
	uint32_t sq_idle_ms;	/* sqpoll: the SQ thread sleeps after this long without work */
	uint32_t register_ring;	/* 1: register the ring fd, where the kernel allows */
	uint32_t _pad;
	/* io_uring, closed loop: a wait for completions ends this long after it began
	 * with whatever has completed (disk.c, ring_batch_wait_ns); 0: off;
	 * LG_BATCH_WAIT_AUTO: on while the io-wq helpers have CPUs of their own. */
	int64_t batch_wait_ns;
	/* Every CPU a worker of the whole job runs on: this run's and, with several targets,
	 * its sibling runs' (a run per target). The io-wq helpers go to CPUs none of them
	 * holds (disk.c, iowq_free_cpus). NULL: this run's cpus alone. */
	const int32_t *job_cpus;
	uint32_t n_job_cpus;
	uint32_t _pad2;
};

#define LG_BATCH_WAIT_AUTO (-1)
#define LG_MAX_BATCH_WAIT_NS 1000000000LL	/* a fixed batch wait's bound: 1 s */

/*
 * The datagram header, little-endian, at the start of every payload:
 *   magic u32 | flow u32 | seq u32 | run_tag u32 | sched_ns i64 | send_ns i64
 * seq counts per flow and wraps at 2^32; receivers unwrap it against the
 * highest seen. sched_ns and send_ns count from the sending run's start_ns,
 * so hosts that start together share a timebase. Padding up to the payload
 * size follows.
 */
#define LG_PKT_MAGIC 0x4c47504bu	/* "KPGL" on the wire */
#define LG_PKT_HEADER_BYTES 32
#define LG_PKT_MAX_BYTES 65507		/* largest UDP payload over IPv4 */

/* Bounds the start functions enforce (-EINVAL beyond them); Python checks options against the same. */
#define LG_MAX_QD 4096		/* I/Os in flight per disk worker */
#define LG_MAX_FLOWS 65536	/* flows per net run */
#define LG_MAX_BATCH 1024	/* datagrams per sendmmsg/recvmmsg */

enum lg_net_engine {
	LG_NET_ENGINE_SOCKET,	/* one connected UDP socket per flow, sendmmsg */
	LG_NET_ENGINE_PACKET,	/* AF_PACKET TX ring per sender (packet.c); flows' UDP sockets only hold their ports */
	LG_NET_ENGINE_XDP,	/* AF_XDP socket per sender (xdp.c), bound to one TX queue; frames as for packet */
};

struct lg_xsk;	/* an AF_XDP socket with its own UMEM and TX ring, bound to one queue (xdp.c) */

/*
 * The packet engine's frames. The caller builds one frame: Ethernet, IPv4 or
 * IPv6, UDP and the payload's padding, with the IP header checksum filled in,
 * and the UDP source port, UDP checksum and the payload's datagram header
 * zeroed. Senders copy it into every ring slot once; per datagram they patch
 * the flow's source port, the datagram header and the UDP checksum, computed
 * from the flow's csum_base (the ones' complement sum, folded to 16 bits, of
 * the pseudo-header and the frame's UDP header and payload as given plus the
 * flow's source port) and the header's words.
 */
struct lg_packet_config {
	const int32_t *fds;	/* senders entries: AF_PACKET SOCK_RAW sockets bound to the egress interface */
	const uint8_t *frame;	/* frame_bytes, from the destination MAC on */
	uint32_t frame_bytes;	/* at most LG_PACKET_MAX_FRAME_BYTES */
	uint32_t udp_offset;	/* where the UDP header starts in the frame */
	const uint16_t *src_ports;	/* flows entries: each flow's UDP source port */
	const uint16_t *csum_base;	/* flows entries: see above */
	uint32_t ring_frames;	/* TX ring slots per sender, a power of two, 0: the default */
	uint32_t _pad;
	struct lg_xsk *const *xsks;	/* LG_NET_ENGINE_XDP: senders entries (lg_xsk_open), fds unused; else NULL */
};

#define LG_PACKET_MAX_FRAME_BYTES 65535	/* the virtio_net_hdr's hdr_len is 16 bits (see packet.c) */
#define LG_PACKET_RING_FRAMES 4096	/* the default ring: slots per sender */
#define LG_XDP_MAX_FRAME_BYTES 4096	/* a UMEM chunk is at most a page (xdp.c) */

/* lg_xsk_mode's bits: how the socket was bound. */
#define LG_XSK_ZEROCOPY 1	/* the driver sends from the UMEM itself; else the kernel copies (XDP_COPY) */
#define LG_XSK_NEED_WAKEUP 2	/* the kernel says when a kick is needed (XDP_USE_NEED_WAKEUP) */

enum lg_net_rx_engine {
	LG_NET_RX_ENGINE_SOCKET,	/* recv_fds: bound UDP sockets, recvmmsg */
	LG_NET_RX_ENGINE_PACKET,	/* recv_fds: AF_PACKET sockets set up by lg_packet_rx_open (packetrx.c) */
};

/*
 * The packet receivers' rings: each recv_fds entry is an AF_PACKET socket
 * with a TPACKET_V3 RX ring of blocks * block_bytes, set up by
 * lg_packet_rx_open with the same geometry; the receiver maps it.
 */
struct lg_packet_rx_config {
	uint32_t block_bytes;	/* a power of two, at least a page, holds the largest frame */
	uint32_t blocks;
};

#define LG_PACKET_RX_BLOCK_BYTES (1u << 20)	/* holds one frame of the largest UDP datagram */
#define LG_PACKET_RX_BLOCKS 16
#define LG_PACKET_RX_RETIRE_MS 8	/* the kernel hands over a block this long after its first frame */

struct lg_net_config {
	uint32_t senders;	/* sender workers; flow f belongs to sender f % senders */
	uint32_t receivers;	/* receiver workers, one per recv_fds entry */
	uint32_t flows;		/* senders: one connected UDP socket each in send_fds; receivers: ids tracked */
	uint32_t size_bytes;	/* UDP payload, LG_PKT_HEADER_BYTES .. LG_PKT_MAX_BYTES */
	uint32_t batch;		/* datagrams per sendmmsg/recvmmsg, 1 .. 1024 */
	uint32_t echo;		/* receivers send each datagram back; senders time the return */
	uint32_t run_tag;	/* datagrams of other runs are foreign; 0 takes all (serve) */
	uint32_t first_seq;	/* first sequence number of every flow */
	uint32_t flow_base;	/* senders' flow ids start here, so several hosts share a receiver */
	uint32_t busy_poll;	/* 1: senders spin to the next due time instead of sleeping */
	uint32_t gso;		/* 1: paced one-way senders send runs by UDP GSO (the stack sees one packet per run) */
	uint32_t engine;	/* enum lg_net_engine: how senders send */
	uint64_t rate_pps;	/* total over all flows; 0: as fast as possible */
	int64_t start_ns;	/* the run's origin in this host's clock; wire times count from it */
	int64_t ramp_end_ns;	/* datagrams scheduled before this are warm-up */
	int64_t end_ns;		/* none is scheduled at or after this */
	int64_t grace_ns;	/* echoes and arrivals are awaited this long after the end */
	const int32_t *send_fds;	/* flows entries, non-blocking, connected */
	const int32_t *recv_fds;	/* receivers entries, bound, with a receive timeout */
	const int32_t *send_cpus;	/* senders entries: CPU or -1 */
	const int32_t *recv_cpus;	/* receivers entries */
	const struct lg_packet_config *packet;	/* LG_NET_ENGINE_PACKET: the frames; else NULL */
	uint32_t rx_engine;	/* enum lg_net_rx_engine: how receivers receive */
	uint32_t _rx_pad;
	const struct lg_packet_rx_config *packet_rx;	/* LG_NET_RX_ENGINE_PACKET: the rings; else NULL */
};

struct lg_run;

/* Version of this ABI; Python refuses a library whose version differs. */
LG_API int lg_abi_version(void);
/* sizeof a config or stats struct by its name, so Python can check its mirror. */
LG_API int lg_struct_size(const char *name);
/* A constant of this header by its lower-case name without LG_ ("max_qd", "pkt_max_bytes"...),
 * so Python can check its copies; -EINVAL for an unknown name. */
LG_API int64_t lg_limit(const char *name);
/* Sizes and names of the stats record, so Python maps it without a mirror. */
LG_API int lg_counter_count(void);
LG_API const char *lg_counter_name(int counter);
LG_API int lg_hist_count(void);
LG_API const char *lg_hist_name(int hist);
LG_API int lg_hdr_counts_len(void);
LG_API int lg_errno_slots(void);

/* The hypervisor's CPUID signature into out (NUL-terminated): 1 under a
 * hypervisor, 0 on bare metal, -EOPNOTSUPP off x86. */
LG_API int lg_hypervisor_vendor(char out[13]);

/* Probes of what virtualization costs (probe.c). Each fills out_ns[samples]
 * with the time of one sample of batch operations back to back; -EINVAL past
 * 100000 samples or operations per batch. */
/* syscall(SYS_getppid): the cheapest round trip into the kernel. */
LG_API int lg_probe_syscall(int64_t *out_ns, uint32_t samples, uint32_t batch);
/* clock_gettime(clock_id): the current clocksource's read, through the vDSO where it allows. */
LG_API int lg_probe_clock(int32_t clock_id, int64_t *out_ns, uint32_t samples, uint32_t batch);
/* A relative clock_nanosleep of request_ns (at most 100 ms) with 1 ns of timer slack;
 * out_ns holds each wake-up's overshoot (slept - requested). -EINTR on a signal. */
LG_API int lg_probe_sleep(int64_t request_ns, int64_t *out_ns, uint32_t samples);
/* The cpuid instruction (leaf 0); -EOPNOTSUPP off x86. */
LG_API int lg_probe_cpuid(int64_t *out_ns, uint32_t samples, uint32_t batch);
/* Pipe round trips between two new threads pinned to cpu_a and cpu_b (-1: not
 * pinned; equal: one CPU); a round trip is two context switches. */
LG_API int lg_probe_context_switch(int32_t cpu_a, int32_t cpu_b, int64_t *out_ns, uint32_t samples,
				   uint32_t batch);
/* Touching each of `pages` fresh anonymous pages (at most 65536, no huge pages): one fault each. */
LG_API int lg_probe_page_fault(int64_t *out_ns, uint32_t samples, uint32_t pages);

/* CLOCK_MONOTONIC now, in ns. */
LG_API int64_t lg_now_ns(void);

/* 0 if this process may create an io_uring, else -errno (EPERM, ENOSYS...). */
LG_API int lg_io_uring_probe(void);
/* Write a non-zero pattern over [offset, offset + length) of fd so that reads hit real blocks. */
LG_API int lg_file_fill(int fd, uint64_t offset_bytes, uint64_t length_bytes);

/* An AF_XDP socket bound to TX queue queue_id of interface ifindex, with its own
 * UMEM of ring_frames frames (a power of two; 0: LG_PACKET_RING_FRAMES) of up to
 * frame_bytes, and a TX ring: zero-copy where the driver takes it, else copy.
 * *out owns it until lg_xsk_close; a net run's sender uses it (lg_packet_config.xsks).
 * -EPERM without CAP_NET_RAW, -EAFNOSUPPORT without AF_XDP, -EMSGSIZE past
 * LG_XDP_MAX_FRAME_BYTES, -EBUSY when the queue has a socket already. */
LG_API int lg_xsk_open(int32_t ifindex, uint32_t queue_id, uint32_t frame_bytes, uint32_t ring_frames,
		       struct lg_xsk **out);
/* LG_XSK_* bits of how x was bound. */
LG_API int lg_xsk_mode(const struct lg_xsk *x);
/* Close x and free its UMEM (after the run that used it is freed). */
LG_API void lg_xsk_close(struct lg_xsk *x);
/* A sweep (sweep.c): one worker passes over extents in order, io_bytes per I/O at qd,
 * writing the fill pattern (stamped with block headers under stamp) or, under check,
 * reading and checking every block's header as lg_verify_check does. It counts
 * ops/bytes and verify_* like a disk worker, and ends by itself (lg_run_done). */
struct lg_sweep_config {
	int32_t fd;
	uint32_t check;		/* 0: write; 1: read and check */
	uint32_t io_bytes;	/* a multiple of block_bytes; the last I/O of an extent may be shorter */
	uint32_t qd;
	uint32_t block_bytes;	/* the verify block: a header every block_bytes (stamp, check) */
	uint32_t stamp;		/* writes carry headers of generation 1 and seed */
	uint32_t passes;	/* write: times over the extents */
	uint32_t check_seed;	/* check: the headers' seed must equal seed */
	uint64_t seed;
	const uint64_t *extents; /* n_extents (offset, length) pairs, multiples of block_bytes */
	uint32_t n_extents;
	uint32_t psync;		/* 1: pwrite/pread, no io_uring (an engine forced to psync) */
};

#define LG_VERIFY_MAX_BLOCKS (1u << 27)	/* blocks one disk run may verify: 4 bytes of map each */

/* Start a sweep; on success *out owns it. */
LG_API int lg_sweep_start(const struct lg_sweep_config *cfg, struct lg_run **out);
/* crc32c (Castagnoli, reflected, as iSCSI and ext4) of n bytes, continuing crc (0 to start):
 * impl 0 the fastest here, 1 the table, 2 SSE4.2 (-EOPNOTSUPP without it). Test hook. */
LG_API int lg_crc32c(const void *buf, uint64_t n, uint32_t crc, int impl, uint32_t *out);
/* Stamp the header of block_bytes at buf (offset, seed, generation) and its crc32c. */
LG_API int lg_verify_stamp(void *buf, uint32_t block_bytes, uint64_t offset_bytes, uint64_t seed,
			   uint64_t generation);
/* Check the block at buf read from offset_bytes: 0 good, else enum lg_verify_reason bits;
 * generation 0 accepts any, check_seed 0 any seed. *mismatch (if not NULL) gets both headers. */
LG_API int lg_verify_check(const void *buf, uint32_t block_bytes, uint64_t offset_bytes, uint64_t seed,
			   int check_seed, uint64_t generation, struct lg_verify_mismatch *mismatch);

/* Start cfg->workers disk workers; on success *out owns them. */
LG_API int lg_disk_start(const struct lg_disk_config *cfg, struct lg_run **out);
/* Start senders (workers 0 .. senders-1) then receivers; the caller keeps the fds open until freed. */
LG_API int lg_net_start(const struct lg_net_config *cfg, struct lg_run **out);

LG_API int lg_run_workers(const struct lg_run *run);
/* A consistent copy of every worker's stats into out[n_workers]: each worker
 * copies its own at its next batch boundary; one that does not within wait_ns
 * is between batches and is read directly. Returns how many copies may be
 * inconsistent (0 normally), or -errno. Workers never wait for it. */
LG_API int lg_run_snapshot(struct lg_run *run, struct lg_worker_stats *out, int64_t wait_ns);
/* Ask every worker to stop; ops completing at or after stop_ns are not counted. */
LG_API void lg_run_stop(struct lg_run *run, int64_t stop_ns);
/* 1 once every worker has exited, else 0. */
LG_API int lg_run_done(const struct lg_run *run);
/* Wait for every worker; 0, or the first worker's setup -errno. */
LG_API int lg_run_join(struct lg_run *run);
LG_API void lg_run_free(struct lg_run *run);

/* The first n offsets worker would use under cfg, into out (test hook for the offset generator). */
LG_API int lg_disk_offsets(const struct lg_disk_config *cfg, int worker, uint64_t *out, uint32_t n);

/* Make fd (an AF_PACKET SOCK_DGRAM socket, its filter attached) a packet
 * receiver: a TPACKET_V3 RX ring of rx's geometry, bound to ifindex (0: every
 * interface) for protocol (host order: ETH_P_IP, ETH_P_IPV6), then in a
 * PACKET_FANOUT_HASH group (IPv4 defragmented first): fanout_id < 0 founds a
 * new group the kernel numbers uniquely, else joins that one. Returns the
 * group's id (0 .. 65535) or -errno. */
LG_API int lg_packet_rx_open(int fd, int32_t ifindex, uint32_t protocol, const struct lg_packet_rx_config *rx,
			     int32_t fanout_id);

/* Encode a datagram header into buf (LG_PKT_HEADER_BYTES); test hook for the wire format. */
LG_API void lg_pkt_encode(void *buf, uint32_t flow, uint32_t seq, uint32_t run_tag,
			  int64_t sched_ns, int64_t send_ns);
/* The frame packet senders would send for datagram seq of flow index flow
 * (0 .. flows-1) of cfg (engine LG_NET_ENGINE_PACKET), into out (cfg->packet->frame_bytes);
 * returns its length. Test hook for the frame patching and checksum. */
LG_API int lg_packet_frame(const struct lg_net_config *cfg, uint32_t flow, uint32_t seq,
			   int64_t sched_ns, int64_t send_ns, void *out);
/* Feed seqs to a fresh flow tracker expecting first_seq; out: in_order, reordered,
 * duplicated, too_old, holes (gaps still open at the end). Test hook. */
LG_API int lg_seq_replay(const uint32_t *seqs, uint32_t n, uint32_t first_seq, uint64_t out[5]);

/* The due times of ops k0 .. k0+n-1 of stream phase of stride at rate per
 * second, stepped incrementally as the engines do (test hook for pace.h). */
LG_API int lg_pace_schedule(int64_t start_ns, uint64_t rate, uint64_t stride, uint64_t phase,
			    uint64_t k0, int64_t *out, uint32_t n);
/* How many ops of that stream are due at or before t_ns (test hook). */
LG_API int64_t lg_pace_count_by(int64_t start_ns, uint64_t rate, uint64_t stride, uint64_t phase,
				int64_t t_ns);
/* The tolerance (out[0]) and the window (out[1]) pace.h derives from a wake-up's
 * lateness and CPU time: a test hook. */
LG_API int lg_pace_wake_windows(int64_t late_p90_ns, int64_t cpu_ns, int64_t out[2]);

/* NVMe passthrough (nvme.c). Fill out (72 bytes, struct nvme_uring_cmd) with the
 * NVM Read (is_write 0) or Write of length_bytes at offset_bytes of namespace nsid,
 * whose LBAs are 1 << lba_shift bytes, moving data at addr; returns 72, or -EINVAL
 * unless both are whole LBAs, length is 1 .. 65536 LBAs and lba_shift is 9 .. 30.
 * Test hook for the encoding the engine puts in every SQE. */
LG_API int lg_nvme_encode(void *out, int32_t is_write, uint32_t nsid, uint32_t lba_shift, uint64_t offset_bytes,
			  uint32_t length_bytes, uint64_t addr);
/* The 128-byte SQE the nvme engine submits for that command on fd (fixed_file: a
 * registered file's index; buf_index >= 0: addr lies in that registered buffer);
 * returns 128 (test hook for nvme_prep_rw). */
LG_API int lg_nvme_sqe(void *out, int32_t fd, int32_t fixed_file, int32_t buf_index, int32_t is_write, uint32_t nsid,
		       uint32_t lba_shift, uint64_t offset_bytes, uint32_t length_bytes, uint64_t addr);
/* Fill out (72 bytes, struct nvme_passthru_cmd) with Identify Namespace of nsid into addr; returns 72 (test hook). */
LG_API int lg_nvme_encode_identify(void *out, uint32_t nsid, uint64_t addr);
/* The namespace behind fd (NVME_IOCTL_ID) and its Identify Namespace data into out
 * (4096 bytes); returns the nsid, or -errno (-ENOTTY: not an NVMe namespace's device;
 * -EIO: the controller failed the command). */
LG_API int lg_nvme_identify(int32_t fd, void *out);
/* 0 if a ring with 128-byte SQEs and 32-byte CQEs (what passthrough needs) works
 * here: set up, NOPs round-tripped past its wrap, torn down; else -errno. */
LG_API int lg_nvme_ring_probe(void);

/* Record value_ns into one HDR counts array (test hook for the recorder). */
LG_API void lg_hdr_record(uint64_t *counts, int64_t value_ns);
/* The counts index of value_ns in the HDR layout above. */
LG_API int lg_hdr_index(int64_t value_ns);

#endif
