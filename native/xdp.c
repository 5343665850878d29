/*
 * xdp.c: the xdp engine's senders, one AF_XDP socket each, with its own UMEM.
 *
 * Vocabulary (linux/if_xdp.h, Documentation/networking/af_xdp.rst):
 *   UMEM     memory this process registers with the socket (XDP_UMEM_REG),
 *            cut into chunks of one frame each; frames are sent from it.
 *   TX ring  descriptors (UMEM address, length) we produce and the kernel
 *            consumes; the completion ring gives back the addresses of the
 *            frames the kernel is done with. The fill ring is for receiving,
 *            unused here, but the kernel wants one before it binds.
 *   mode     zero-copy (the driver sends from the UMEM itself) where the
 *            driver supports it, else copy (XDP_COPY: the kernel copies each
 *            frame into an skb and hands it to the driver, in the kick's own
 *            syscall). The bind tries XDP_ZEROCOPY and falls back to XDP_COPY.
 *   kick     sendto(MSG_DONTWAIT), only when the TX ring's need_wakeup flag
 *            says the kernel waits for one (XDP_USE_NEED_WAKEUP, Linux >= 5.4;
 *            without it, every time). In copy mode one sendto sends at most a
 *            budget of frames (32 by default) and says EAGAIN when more are
 *            left, so a kick repeats while the kernel takes more.
 *
 * Frames: every UMEM chunk gets the caller's template (struct
 * lg_packet_config) once; per datagram only the flow's source port, the
 * datagram header and the UDP checksum are patched in (rawsend.h, which also
 * runs the sender's loop: the same pacing and accounting as the packet and
 * socket engines). A frame is "sent" when its address comes back on the
 * completion ring. A frame the device dropped comes back too, the sendto
 * saying EBUSY (veth: the peer's backlog was full): like a UDP socket's
 * ENOBUFS, it is counted sent and the receiver counts it lost. Completions
 * may come back in any order: free chunks are a stack.
 *
 * TX needs no XDP program: only receiving does. On veth (no zero-copy: it has
 * no ndo_xsk_wakeup) copy mode works with nothing loaded on either end and the
 * peer's GRO off (veth's default, so no NAPI): the skb goes through veth_xmit
 * to the peer's backlog like any other (seen on Linux 6.18, where the bind with
 * XDP_ZEROCOPY fails and the one with XDP_COPY | XDP_USE_NEED_WAKEUP holds).
 *
 * Rules: the sockets are opened by lg_xsk_open, before the run, so that a
 * refusal (privilege, no AF_XDP, a busy queue) is a setup error the caller
 * names; the run's sender uses one and lg_xsk_close frees it after the run.
 * Functions return >= 0 or -errno and never print.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/if_xdp.h>
#include "clock.h"
#include "packet.h"
#include "rawsend.h"
#include "run.h"

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

/* The fill ring is unused for sending, but the kernel binds only with one; the
 * smallest power of two it takes. */
#define FILL_RING_ENTRIES 1u
/* A sender whose frames are all in flight sleeps this long at most before it looks again. */
#define XSK_BLOCKED_MAX_NS 50000LL
/* Chunk sizes the kernel takes in aligned mode: a power of two from 2048 to a page. */
#define CHUNK_MIN_BYTES 2048u

struct xsk_ring {
	uint32_t *producer, *consumer, *flags;
	void *descs;		/* struct xdp_desc (TX) or __u64 addresses (completion) */
	void *map;
	size_t map_bytes;
	uint32_t mask;
};

struct lg_xsk {
	int fd;
	int mode;			/* LG_XSK_* */
	unsigned char *umem;
	size_t umem_bytes;
	uint32_t chunk_bytes, frames;
	struct xsk_ring tx, cq, fq;
	/* the sender's state, reset by xsk_prepare */
	uint32_t frame_bytes;		/* the template's length */
	uint32_t tx_head;		/* our next TX descriptor; published on kick */
	uint32_t cq_head;		/* our next completion to read */
	uint32_t *free_stack, n_free;	/* chunks not in flight */
	uint32_t pending;		/* committed, not yet completed */
	uint32_t taken;			/* the chunk slot() handed out */
	uint8_t *in_flight;		/* per chunk */
	int64_t *sched_ns, *send_ns;	/* per chunk: its datagram's scheduled and actual send time */
};

static void ring_unmap(struct xsk_ring *r)
{
	if (r->map)
		munmap(r->map, r->map_bytes);
	memset(r, 0, sizeof(*r));
}

void lg_xsk_close(struct lg_xsk *x)
{
	if (!x)
		return;
	ring_unmap(&x->tx);
	ring_unmap(&x->cq);
	ring_unmap(&x->fq);
	if (x->fd >= 0)
		close(x->fd);
	if (x->umem)
		munmap(x->umem, x->umem_bytes);
	free(x->free_stack);
	free(x->in_flight);
	free(x->sched_ns);
	free(x->send_ns);
	free(x);
}

int lg_xsk_mode(const struct lg_xsk *x)
{
	return x ? x->mode : -EINVAL;
}

/* Map one ring of entries of entry_bytes at the kernel's offsets off and page pgoff. */
static int ring_map(struct xsk_ring *r, int fd, const struct xdp_ring_offset *off, uint32_t entries,
		    size_t entry_bytes, off_t pgoff)
{
	unsigned char *map;

	r->map_bytes = off->desc + entries * entry_bytes;
	map = mmap(NULL, r->map_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
	if (map == MAP_FAILED)
		return -errno;
	r->map = map;
	r->producer = (uint32_t *)(map + off->producer);
	r->consumer = (uint32_t *)(map + off->consumer);
	r->flags = (uint32_t *)(map + off->flags);
	r->descs = map + off->desc;
	r->mask = entries - 1;
	return 0;
}

/* One attempt: a socket, its UMEM and rings, bound with bind_flags. */
static int xsk_try(struct lg_xsk *x, int ifindex, uint32_t queue_id, uint16_t bind_flags)
{
	struct xdp_umem_reg reg;
	struct xdp_mmap_offsets off;
	struct sockaddr_xdp sxdp;
	struct xdp_options opts;
	socklen_t len = sizeof(off);
	uint32_t fill = FILL_RING_ENTRIES;
	int err;

	x->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (x->fd < 0)
		return -errno;
	memset(&reg, 0, sizeof(reg));
	reg.addr = (uintptr_t)x->umem;
	reg.len = x->umem_bytes;
	reg.chunk_size = x->chunk_bytes;
	/* The rings before the bind; both UMEM rings are required (xsk_validate_queues). */
	if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg)) ||
	    setsockopt(x->fd, SOL_XDP, XDP_UMEM_FILL_RING, &fill, sizeof(fill)) ||
	    setsockopt(x->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &x->frames, sizeof(x->frames)) ||
	    setsockopt(x->fd, SOL_XDP, XDP_TX_RING, &x->frames, sizeof(x->frames)) ||
	    getsockopt(x->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &len))
		return -errno;
	/* Before Linux 5.4 the offsets had no flags: no need_wakeup, a layout not handled here. */
	if (len != sizeof(off))
		return -EOPNOTSUPP;
	err = ring_map(&x->tx, x->fd, &off.tx, x->frames, sizeof(struct xdp_desc), XDP_PGOFF_TX_RING);
	if (!err)
		err = ring_map(&x->cq, x->fd, &off.cr, x->frames, sizeof(__u64), XDP_UMEM_PGOFF_COMPLETION_RING);
	if (!err)
		err = ring_map(&x->fq, x->fd, &off.fr, fill, sizeof(__u64), XDP_UMEM_PGOFF_FILL_RING);
	if (err)
		return err;
	memset(&sxdp, 0, sizeof(sxdp));
	sxdp.sxdp_family = AF_XDP;
	sxdp.sxdp_ifindex = (uint32_t)ifindex;
	sxdp.sxdp_queue_id = queue_id;
	sxdp.sxdp_flags = bind_flags;
	if (bind(x->fd, (struct sockaddr *)&sxdp, sizeof(sxdp)))
		return -errno;
	len = sizeof(opts);
	x->mode = (bind_flags & XDP_USE_NEED_WAKEUP) ? LG_XSK_NEED_WAKEUP : 0;
	/* what the kernel made of it: XDP_OPTIONS, Linux >= 5.3 */
	if (!getsockopt(x->fd, SOL_XDP, XDP_OPTIONS, &opts, &len) && (opts.flags & XDP_OPTIONS_ZEROCOPY))
		x->mode |= LG_XSK_ZEROCOPY;
	return 0;
}

/* Undo a failed xsk_try, keeping the UMEM for the next. */
static void xsk_untry(struct lg_xsk *x)
{
	ring_unmap(&x->tx);
	ring_unmap(&x->cq);
	ring_unmap(&x->fq);
	if (x->fd >= 0)
		close(x->fd);
	x->fd = -1;
}

int lg_xsk_open(int32_t ifindex, uint32_t queue_id, uint32_t frame_bytes, uint32_t ring_frames,
		struct lg_xsk **out)
{
	/* Zero-copy first, then copy; need_wakeup dropped where the kernel refuses it (EINVAL). */
	static const uint16_t tries[] = {
		XDP_ZEROCOPY | XDP_USE_NEED_WAKEUP, XDP_COPY | XDP_USE_NEED_WAKEUP, XDP_ZEROCOPY, XDP_COPY,
	};
	long page = sysconf(_SC_PAGESIZE);
	struct lg_xsk *x;
	int err = 0;

	if (!out || ifindex <= 0 || frame_bytes == 0 || (ring_frames & (ring_frames - 1)))
		return -EINVAL;
	if (frame_bytes > LG_XDP_MAX_FRAME_BYTES || frame_bytes > (uint32_t)page)
		return -EMSGSIZE;
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->fd = -1;
	x->frames = ring_frames ? ring_frames : LG_PACKET_RING_FRAMES;
	x->chunk_bytes = CHUNK_MIN_BYTES;
	while (x->chunk_bytes < frame_bytes)
		x->chunk_bytes <<= 1;
	x->umem_bytes = (size_t)x->frames * x->chunk_bytes;
	x->umem = mmap(NULL, x->umem_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		       -1, 0);
	if (x->umem == MAP_FAILED) {
		err = -errno;
		x->umem = NULL;
		lg_xsk_close(x);
		return err;
	}
	x->free_stack = calloc(x->frames, sizeof(*x->free_stack));
	x->in_flight = calloc(x->frames, sizeof(*x->in_flight));
	x->sched_ns = calloc(x->frames, sizeof(*x->sched_ns));
	x->send_ns = calloc(x->frames, sizeof(*x->send_ns));
	if (!x->free_stack || !x->in_flight || !x->sched_ns || !x->send_ns) {
		lg_xsk_close(x);
		return -ENOMEM;
	}
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		int e = xsk_try(x, ifindex, queue_id, tries[i]);

		if (!e) {
			*out = x;
			return 0;
		}
		xsk_untry(x);
		/* The socket or the UMEM itself refused: no other bind flags help. */
		if (e == -EPERM || e == -EAFNOSUPPORT || e == -ENOBUFS || e == -ENOMEM) {
			err = e;
			break;
		}
		/* Keep the copy mode's reason: zero-copy's is expected on most devices. */
		if (!err || (tries[i] & XDP_COPY))
			err = e;
	}
	lg_xsk_close(x);
	return err;
}

/* Fill every chunk with the template and make them all free: the state a sender starts from. */
static void xsk_prepare(struct lg_xsk *x, const struct lg_packet_config *pc)
{
	x->frame_bytes = pc->frame_bytes;
	x->n_free = 0;
	for (uint32_t i = 0; i < x->frames; i++) {
		memcpy(x->umem + (size_t)i * x->chunk_bytes, pc->frame, pc->frame_bytes);
		x->in_flight[i] = 0;
		/* the lowest chunk on top: the first frames go out in UMEM order */
		x->free_stack[x->n_free++] = x->frames - 1 - i;
	}
	x->pending = 0;
	x->tx_head = __atomic_load_n(x->tx.producer, __ATOMIC_RELAXED);
	x->cq_head = __atomic_load_n(x->cq.consumer, __ATOMIC_RELAXED);
}

/* raw_ops over a struct lg_xsk (rawsend.h). */
static unsigned char *ops_slot(void *ring)
{
	struct lg_xsk *x = ring;

	if (!x->n_free)
		return NULL;
	x->taken = x->free_stack[x->n_free - 1];
	return x->umem + (size_t)x->taken * x->chunk_bytes;
}

static void ops_commit(void *ring, int64_t sched_ns, int64_t send_ns)
{
	struct lg_xsk *x = ring;
	struct xdp_desc *d = (struct xdp_desc *)x->tx.descs + (x->tx_head & x->tx.mask);
	uint32_t i = x->taken;

	/* The TX ring has as many entries as there are chunks: a free chunk has a free entry. */
	d->addr = (uint64_t)i * x->chunk_bytes;
	d->len = x->frame_bytes;
	d->options = 0;
	x->sched_ns[i] = sched_ns;
	x->send_ns[i] = send_ns;
	x->in_flight[i] = 1;
	x->n_free--;
	x->tx_head++;
	x->pending++;
}

/* Descriptors on the TX ring the kernel has not consumed yet. */
static uint32_t tx_unconsumed(const struct lg_xsk *x)
{
	/* acquire: pairs with the kernel's release of the consumer, after it read the descriptors */
	return x->tx_head - __atomic_load_n(x->tx.consumer, __ATOMIC_ACQUIRE);
}

static void ops_kick(void *ring, struct lg_worker_stats *st)
{
	struct lg_xsk *x = ring;
	uint32_t left;

	/* release: the descriptors (and their frames) are visible before the kernel sees the producer */
	__atomic_store_n(x->tx.producer, x->tx_head, __ATOMIC_RELEASE);
	while ((left = tx_unconsumed(x))) {
		if ((x->mode & LG_XSK_NEED_WAKEUP) &&
		    !(__atomic_load_n(x->tx.flags, __ATOMIC_ACQUIRE) & XDP_RING_NEED_WAKEUP))
			return;	/* the driver is sending: it needs no kick */
		/* EAGAIN: past the copy mode's budget, or the device is busy; EBUSY: the
		 * device dropped a frame (see the top of this file); ENOBUFS: no skb now.
		 * Again only while the kernel takes frames: a busy device, or a
		 * zero-copy driver just woken, is left to the next pass. */
		if (sendto(x->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EBUSY && errno != EINTR && errno != ENOBUFS) {
			pace_count_errno(st, errno);
			return;
		}
		if (tx_unconsumed(x) >= left)
			return;
	}
}

static unsigned ops_reap(void *ring, const struct lg_net_config *cfg, struct send_tally *t, int64_t slot_ns)
{
	struct lg_xsk *x = ring;
	/* acquire: the addresses are visible once the producer that covers them is */
	uint32_t prod = __atomic_load_n(x->cq.producer, __ATOMIC_ACQUIRE), n = prod - x->cq_head;
	const __u64 *addrs = x->cq.descs;

	for (uint32_t k = 0; k < n; k++) {
		uint64_t i = addrs[x->cq_head++ & x->cq.mask] / x->chunk_bytes;

		if (i >= x->frames || !x->in_flight[i])
			continue;	/* not one of ours in flight: cannot happen, never trusted */
		tally_add(t, cfg, x->send_ns[i], x->sched_ns[i], slot_ns);
		x->in_flight[i] = 0;
		x->free_stack[x->n_free++] = (uint32_t)i;
		x->pending--;
	}
	if (n)
		/* release: the entries are read before the kernel may write over them */
		__atomic_store_n(x->cq.consumer, x->cq_head, __ATOMIC_RELEASE);
	return n;
}

static uint32_t ops_pending(const void *ring)
{
	return ((const struct lg_xsk *)ring)->pending;
}

static uint32_t ops_held(const void *ring)
{
	/* A descriptor on the ring cannot be taken back: the kernel sends it, asked or not. */
	return ((const struct lg_xsk *)ring)->pending;
}

static void ops_wait(void *ring, int64_t until_ns)
{
	int64_t t = clock_now_ns() + XSK_BLOCKED_MAX_NS;

	(void)ring;
	/* No poll event says "a completion came": sleep a little and look again. */
	pace_sleep_until(t < until_ns ? t : until_ns);
}

static uint64_t ops_unsent(const void *ring, int64_t ramp_end_ns)
{
	const struct lg_xsk *x = ring;
	uint64_t unsent = 0;

	/* Still in flight after the grace: not counted sent. */
	for (uint32_t i = 0; i < x->frames; i++)
		unsent += x->in_flight[i] && x->sched_ns[i] >= ramp_end_ns;
	return unsent;
}

static const struct raw_ops xdp_ops = {
	.slot = ops_slot, .commit = ops_commit, .kick = ops_kick, .reap = ops_reap,
	.pending = ops_pending, .held = ops_held, .wait = ops_wait, .unsent = ops_unsent,
};

void xdp_sender_worker(struct worker *w)
{
	const struct lg_net_config *cfg = w->config;
	struct lg_xsk *x = cfg->packet->xsks[w->index];
	struct raw_flow *flows = raw_flows_alloc(cfg);

	if (!flows || cfg->packet->frame_bytes > x->chunk_bytes) {
		worker_set_state(w, LG_STATE_FAILED, flows ? EMSGSIZE : ENOMEM);
		free(flows);
		return;
	}
	xsk_prepare(x, cfg->packet);
	raw_sender_run(&xdp_ops, x, w, flows, NULL);
	free(flows);
}
