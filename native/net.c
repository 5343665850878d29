/*
 * net.c: UDP senders and receivers.
 *
 * Senders of engine LG_NET_ENGINE_PACKET are packet.c's: an AF_PACKET TX ring
 * each; of LG_NET_ENGINE_XDP, xdp.c's: an AF_XDP socket each; both on the same
 * schedule and accounting (pace.h, tally.h, rawsend.h). The rest of
 * this comment is about the socket senders and the receivers.
 *
 * Senders: flow f belongs to sender f % senders and has its own connected,
 * non-blocking socket (its own source port, so its own 5-tuple for RSS).
 * Open loop: datagram k of flow f of F is scheduled at
 *     start_ns + (k * F + f) * 1e9 / rate_pps,
 * so the flows interleave into one evenly spaced stream. Each pass sends,
 * with one sendmmsg per flow (batch at most), every datagram due within the
 * pacing window of now (one-way streams) or the tolerance (echo, whose round
 * trips a burst would queue up), then sleeps until the next is due (pace.h);
 * in echo mode the sleep is a ppoll that also wakes for returns. busy_poll
 * spins instead. Each datagram carries its own scheduled time; how far ahead
 * of it datagrams went is counted (early_max_ns, early_sum_ns). A sender that
 * falls behind sends its backlog at full speed and never skips a datagram.
 *
 * Echo timing: senders' sockets carry SO_TIMESTAMPNS, so each return has the
 * kernel's receive time beside loadgen's own read time: kernel_rtt is the
 * kernel's receive minus the actual send, user_delay is loadgen's read minus
 * the kernel's receive (loadgen's own delay, not the network's).
 *
 * Receivers: one socket each (SO_REUSEPORT spreads flows over them), drained
 * with recvmmsg that blocks for the first datagram (busy_poll: that spins on
 * it, a core burnt per receiver, no wake-ups); each tracks every flow's
 * sequence numbers (seq.h). Their sockets carry SO_TIMESTAMPNS: a datagram
 * arrives when the kernel stamped it, not when loadgen read it (counted in
 * kernel_stamped), so a paced one-way receiver sleeps a pacing window between
 * drains and wakes once per window, not once per datagram, without moving any
 * arrival time. In echo mode they send every datagram back unchanged, at once,
 * and the sender times it.
 *
 * Counting window: a datagram counts when its scheduled time is in
 * [ramp_end_ns, end): senders and receivers decide it from the same header
 * field, so lost = sent - (received - duplicated) holds exactly.
 *
 * Times on the wire are ns since the run's start_ns, not one host's clock: a
 * receiver on another host, told the start in its own clock, reads them in
 * the same timebase as every sender that started together.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "arrival.h"
#include "clock.h"
#include "echo.h"
#include "hdr.h"
#include "pace.h"
#include "packet.h"
#include "packetrx.h"
#include "pkt.h"
#include "run.h"
#include "seq.h"
#include "tally.h"

#define MAX_BATCH LG_MAX_BATCH
/* A sender whose send queues are full waits this long at most before it looks again. */
#define SEND_BLOCKED_MAX_NS 1000000L
#define MAX_FLOWS LG_MAX_FLOWS
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103		/* linux/udp.h, Linux >= 4.18 */
#endif
/* UDP GSO takes at most this many segments per send (UDP_MAX_SEGMENTS, 64
 * before Linux 6.9) and at most one IPv4 datagram's worth of payload. */
#define GSO_MAX_SEGMENTS 64

/* One batch of datagram buffers with their iovecs and headers, for sendmmsg/recvmmsg. */
struct batch {
	unsigned n;
	unsigned size_bytes;
	unsigned char *bufs;
	struct iovec *iov;
	struct mmsghdr *msgs;
	struct sockaddr_storage *addrs;	/* receivers: sources, for echo */
	unsigned char *ctrl;		/* echo senders: room for each datagram's receive stamp */
	/* one-way senders with UDP GSO: runs of up to gso_segments datagrams, each
	 * run one message whose UDP_SEGMENT cuts it back into the datagrams */
	unsigned gso_segments;		/* 0: no GSO */
	struct iovec *gso_iov;
	struct mmsghdr *gso_msgs;
	unsigned char *gso_ctrl;
};

#define GSO_CTRL_BYTES CMSG_SPACE(sizeof(uint16_t))

/* One SCM_TIMESTAMPNS per datagram, and at a receiver the SO_RXQ_OVFL drop count. */
#define STAMP_CTRL_BYTES (CMSG_SPACE(sizeof(struct timespec)) + CMSG_SPACE(sizeof(uint32_t)))

struct flow_state {
	int fd;
	uint32_t slot;		/* this host's flow number: its place in the schedule */
	uint32_t id;		/* on the wire: flow_base + slot */
	struct pace_cursor next; /* next datagram in this flow's schedule; next.k is its index */
	struct seq_tracker echo_seq;	/* echo mode: the returns */
	unsigned max_batch;	/* b->n, or 1 once sendmmsg lost an error of this socket (see send_flow) */
	int gso;		/* send runs by UDP GSO, until the path refuses it */
};

static int batch_alloc(struct batch *b, unsigned n, unsigned size_bytes, int with_addrs, int with_stamps)
{
	memset(b, 0, sizeof(*b));
	b->n = n;
	b->size_bytes = size_bytes;
	b->bufs = calloc(n, size_bytes);
	b->iov = calloc(n, sizeof(*b->iov));
	b->msgs = calloc(n, sizeof(*b->msgs));
	b->addrs = with_addrs ? calloc(n, sizeof(*b->addrs)) : NULL;
	b->ctrl = with_stamps ? calloc(n, STAMP_CTRL_BYTES) : NULL;
	if (!b->bufs || !b->iov || !b->msgs || (with_addrs && !b->addrs) || (with_stamps && !b->ctrl))
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		/* Padding carries a non-zero pattern so no layer can compress it away. */
		for (unsigned j = LG_PKT_HEADER_BYTES; j < size_bytes; j++)
			b->bufs[(size_t)i * size_bytes + j] = (unsigned char)(0xa5 ^ j);
		b->iov[i].iov_base = b->bufs + (size_t)i * size_bytes;
		b->iov[i].iov_len = size_bytes;
		b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
		b->msgs[i].msg_hdr.msg_iovlen = 1;
		if (b->ctrl) {
			b->msgs[i].msg_hdr.msg_control = b->ctrl + (size_t)i * STAMP_CTRL_BYTES;
			b->msgs[i].msg_hdr.msg_controllen = STAMP_CTRL_BYTES;
		}
	}
	return 0;
}

/* Let b send runs of datagrams by UDP GSO (one-way senders; see send_gso). */
static int batch_enable_gso(struct batch *b)
{
	unsigned seg = LG_PKT_MAX_BYTES / b->size_bytes, runs;

	seg = seg < GSO_MAX_SEGMENTS ? seg : GSO_MAX_SEGMENTS;
	if (seg < 2)
		return 0;	/* one datagram per run saves nothing */
	runs = (b->n + seg - 1) / seg;
	b->gso_iov = calloc(runs, sizeof(*b->gso_iov));
	b->gso_msgs = calloc(runs, sizeof(*b->gso_msgs));
	b->gso_ctrl = calloc(runs, GSO_CTRL_BYTES);
	if (!b->gso_iov || !b->gso_msgs || !b->gso_ctrl)
		return -ENOMEM;
	for (unsigned i = 0; i < runs; i++) {
		struct msghdr *mh = &b->gso_msgs[i].msg_hdr;
		struct cmsghdr *cm;
		uint16_t size = (uint16_t)b->size_bytes;

		mh->msg_iov = &b->gso_iov[i];
		mh->msg_iovlen = 1;
		mh->msg_control = b->gso_ctrl + (size_t)i * GSO_CTRL_BYTES;
		mh->msg_controllen = GSO_CTRL_BYTES;
		cm = CMSG_FIRSTHDR(mh);
		cm->cmsg_level = SOL_UDP;
		cm->cmsg_type = UDP_SEGMENT;
		cm->cmsg_len = CMSG_LEN(sizeof(size));
		memcpy(CMSG_DATA(cm), &size, sizeof(size));
	}
	b->gso_segments = seg;
	return 0;
}

static void batch_free(struct batch *b)
{
	free(b->bufs);
	free(b->iov);
	free(b->msgs);
	free(b->addrs);
	free(b->ctrl);
	free(b->gso_iov);
	free(b->gso_msgs);
	free(b->gso_ctrl);
}

/* Send the first n datagrams of b, whose buffers lie end to end, as runs of
 * b->gso_segments: the stack and the loopback carry each run once, and the
 * kernel cuts it into datagrams (on the receiving socket, or on a NIC that
 * cannot). Returns how many datagrams went, or -1 with errno when none did. */
static int send_gso(int fd, struct batch *b, unsigned n)
{
	unsigned runs = 0;
	int ret;

	for (unsigned i = 0; i < n; i += b->gso_segments) {
		unsigned k = n - i < b->gso_segments ? n - i : b->gso_segments;

		b->gso_iov[runs].iov_base = b->bufs + (size_t)i * b->size_bytes;
		b->gso_iov[runs].iov_len = (size_t)k * b->size_bytes;
		runs++;
	}
	ret = sendmmsg(fd, b->gso_msgs, runs, MSG_DONTWAIT);
	if (ret <= 0)
		return ret < 0 ? -1 : 0;
	/* every run but the last is full */
	return (unsigned)ret == runs ? (int)n : ret * (int)b->gso_segments;
}

void lg_pkt_encode(void *buf, uint32_t flow, uint32_t seq, uint32_t run_tag, int64_t sched_ns,
		   int64_t send_ns)
{
	header_write(buf, flow, seq, run_tag, sched_ns, send_ns);
}

static void count_error(struct lg_worker_stats *st, int err)
{
	pace_count_errno(st, err);
	if (err == ECONNREFUSED)
		counter_add(&st->counters[LG_CTR_REFUSED], 1);
}

/* Send what of flow f is due by horizon_ns (unpaced: a full batch), in one
 * sendmmsg; returns how many the kernel took. The batch is tallied in the
 * loop that builds it, and published once: these are the hot path's stores. */
static unsigned send_flow(const struct lg_net_config *cfg, struct lg_worker_stats *st,
			  struct flow_state *f, struct batch *b, int64_t now_ns, int64_t horizon_ns,
			  int64_t slot_ns)
{
	struct pace_cursor c = f->next;
	uint32_t seq0 = cfg->first_seq + (uint32_t)c.k;
	struct send_tally tally = { 0 };
	unsigned n;
	int ret, by_gso = 0;

	for (n = 0; n < f->max_batch; n++) {
		int64_t sched = now_ns;

		if (cfg->rate_pps) {
			sched = pace_due_ns(&c);
			if (sched > horizon_ns)
				break;
		}
		header_write(b->iov[n].iov_base, f->id, seq0 + n, cfg->run_tag,
			     sched - cfg->start_ns, now_ns - cfg->start_ns);
		tally_add(&tally, cfg, now_ns, sched, slot_ns);
		pace_next(&c);
	}
	if (n == 0)
		return 0;
	if (f->gso && n > 1) {
		ret = send_gso(f->fd, b, n);
		by_gso = ret > 0;
		/* a path without UDP GSO (an old kernel, a NIC without checksum
		 * offload, a payload over the MTU): send datagram by datagram */
		if (ret < 0 && (errno == EINVAL || errno == EIO || errno == EOPNOTSUPP || errno == ENOPROTOOPT)) {
			f->gso = 0;
			ret = sendmmsg(f->fd, b->msgs, n, MSG_DONTWAIT);
		}
	} else {
		ret = sendmmsg(f->fd, b->msgs, n, MSG_DONTWAIT);
	}
	if (ret < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR)
			return 0;	/* the queue is full: the backlog waits, nothing is skipped */
		/* A failed datagram still consumes its slot, or the flow would stall on it. */
		if (cfg->rate_pps == 0 || pace_due_ns(&f->next) >= cfg->ramp_end_ns)
			count_error(st, errno);
		pace_next(&f->next);
		return 0;
	}
	if ((unsigned)ret < n) {
		struct pollfd pfd = { .fd = f->fd, .events = POLLOUT };

		/* sendmmsg drops the error that stopped it after the first datagram
		 * (net/socket.c returns the count). With room in the queue it was not
		 * EAGAIN but the socket's own error, say an ICMP unreachable: from now
		 * on this flow sends one datagram per call, so each error is seen and
		 * counted. */
		if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT))
			f->max_batch = 1;
		/* The kernel took part of the batch (rare): tally that part again. */
		c = f->next;
		memset(&tally, 0, sizeof(tally));
		for (int i = 0; i < ret; i++) {
			tally_add(&tally, cfg, now_ns, cfg->rate_pps ? pace_due_ns(&c) : now_ns, slot_ns);
			pace_next(&c);
		}
	}
	f->next = c;
	tally_publish(st, cfg, &tally);
	if (by_gso)
		counter_add(&st->counters[LG_CTR_GSO_SENT], tally.in_window);
	return (unsigned)ret;
}

/* The SCM_TIMESTAMPNS of a received datagram, moved from CLOCK_REALTIME (the
 * kernel's stamp) to CLOCK_MONOTONIC by real_to_mono_ns; 0 when absent. */
static int64_t kernel_rx_ns(const struct msghdr *mh, int64_t real_to_mono_ns)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR((struct msghdr *)mh, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec ts;

			memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
			return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec + real_to_mono_ns;
		}
	}
	return 0;
}

/* The SO_RXQ_OVFL of a received datagram: how many the socket had dropped,
 * its buffer full, when this one was queued; 0 when absent. */
static uint32_t socket_drops(const struct msghdr *mh)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR((struct msghdr *)mh, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_RXQ_OVFL) {
			uint32_t v;

			memcpy(&v, CMSG_DATA(cm), sizeof(v));
			return v;
		}
	}
	return 0;
}

/* Echo mode, sender side: take every return waiting on a flow's socket. */
static void drain_echoes(const struct lg_net_config *cfg, struct lg_worker_stats *st,
			 struct flow_state *f, struct batch *rx)
{
	for (;;) {
		int n = recvmmsg(f->fd, rx->msgs, rx->n, MSG_DONTWAIT, NULL);
		int64_t now, offset;

		if (n <= 0) {
			if (n < 0 && errno == ECONNREFUSED)
				count_error(st, ECONNREFUSED);	/* ICMP unreachable, reported once here */
			return;
		}
		now = clock_now_ns();
		offset = real_to_mono_ns();
		for (int i = 0; i < n; i++) {
			struct msghdr *mh = &rx->msgs[i].msg_hdr;
			int64_t krx = kernel_rx_ns(mh, offset);
			struct pkt_header h;

			mh->msg_controllen = STAMP_CTRL_BYTES;	/* the kernel shrank it to what it used */
			if (!header_read(rx->iov[i].iov_base, rx->msgs[i].msg_len, cfg->run_tag, &h) ||
			    h.flow != f->id) {
				counter_add(&st->counters[LG_CTR_FOREIGN], 1);
				continue;
			}
			/* a stamp after our read: the clocks were stepped between; drop it */
			track_arrival(cfg, st, &f->echo_seq, &h, rx->msgs[i].msg_len, now, 1,
				      krx && krx <= now ? krx : 0);
		}
		if ((unsigned)n < rx->n)
			return;
	}
}

/* Sleep until t_ns, waking early for returns on any of the n sockets (echo
 * mode); afterwards pfds[i].revents says which sockets to drain. */
static void idle_until(struct pollfd *pfds, unsigned n, int64_t t_ns)
{
	int64_t left = t_ns - clock_now_ns();
	struct timespec ts;

	if (n == 0) {
		if (left > 0)
			pace_sleep_until(t_ns);
		return;
	}
	ts.tv_sec = left > 0 ? left / 1000000000LL : 0;
	ts.tv_nsec = left > 0 ? left % 1000000000LL : 0;
	if (left <= 0 || ppoll(pfds, n, &ts, NULL) < 0)
		for (unsigned i = 0; i < n; i++)
			pfds[i].revents = POLLIN;	/* no answer: look at every socket */
}

/* Block until a send queue has room (or a return arrives, in echo mode), for
 * at most SEND_BLOCKED_MAX_NS and never past until_ns; revents then say which
 * sockets to drain. */
static void wait_writable(struct pollfd *pfds, unsigned n, int echo, int64_t until_ns)
{
	int64_t left = until_ns - clock_now_ns();
	struct timespec ts = { 0, SEND_BLOCKED_MAX_NS };

	if (left < SEND_BLOCKED_MAX_NS)
		ts.tv_nsec = left > 0 ? left : 0;
	for (unsigned i = 0; i < n; i++)
		pfds[i].events = POLLOUT | (echo ? POLLIN : 0);
	if (ppoll(pfds, n, &ts, NULL) <= 0 || !echo)
		for (unsigned i = 0; i < n; i++)
			pfds[i].revents = POLLIN;
	for (unsigned i = 0; i < n; i++)
		pfds[i].events = POLLIN;
}

struct echo_rx {
	unsigned n;
	struct flow_state *flows;
	struct pollfd *pfds;
	struct batch rx;
};

void echo_rx_close(struct echo_rx *e)
{
	if (!e)
		return;
	batch_free(&e->rx);
	free(e->flows);
	free(e->pfds);
	free(e);
}

struct echo_rx *echo_rx_open(const struct lg_net_config *cfg, int sender)
{
	unsigned most = (cfg->flows + cfg->senders - 1) / cfg->senders;
	struct echo_rx *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->flows = calloc(most, sizeof(*e->flows));
	e->pfds = calloc(most, sizeof(*e->pfds));
	if (!e->flows || !e->pfds || batch_alloc(&e->rx, cfg->batch, cfg->size_bytes, 0, 1)) {
		echo_rx_close(e);
		return NULL;
	}
	for (uint32_t f = (uint32_t)sender; f < cfg->flows; f += cfg->senders) {
		struct flow_state *fs = &e->flows[e->n];
		int on = 1;

		fs->fd = cfg->send_fds[f];
		fs->slot = f;
		fs->id = cfg->flow_base + f;
		seq_init(&fs->echo_seq, cfg->first_seq);
		/* Best effort: without it returns are timed by loadgen's read alone. */
		setsockopt(fs->fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on));
		e->pfds[e->n].fd = fs->fd;
		e->pfds[e->n].events = POLLIN;
		e->n++;
	}
	return e;
}

void echo_rx_drain(struct echo_rx *e, const struct lg_net_config *cfg, struct lg_worker_stats *st)
{
	for (unsigned i = 0; i < e->n; i++)
		drain_echoes(cfg, st, &e->flows[i], &e->rx);
}

void echo_rx_idle(struct echo_rx *e, int64_t until_ns)
{
	idle_until(e->pfds, e->n, until_ns);
}

static void sender_worker(struct worker *w)
{
	const struct lg_net_config *cfg = w->config;
	struct lg_worker_stats *st = w->stats;
	unsigned n_flows = 0, batch = cfg->batch, n_poll = 0;
	struct flow_state *flows;
	struct pollfd *pfds;
	struct batch tx, rx;
	int64_t slot_ns = 0, deadline, tolerance_ns = 0, window_ns = 0;

	flows = calloc((cfg->flows + cfg->senders - 1) / cfg->senders, sizeof(*flows));
	pfds = calloc((cfg->flows + cfg->senders - 1) / cfg->senders, sizeof(*pfds));
	memset(&tx, 0, sizeof(tx));
	memset(&rx, 0, sizeof(rx));
	/* GSO only when asked (--gso), and only for paced one-way streams: echo
	 * sends one at a time anyway, and blast keeps the per-datagram path its
	 * peers are compared on. Off by default: the stack, and a NIC's packet
	 * counters, then see one packet per run, not per datagram. */
	if (!flows || !pfds || batch_alloc(&tx, batch, cfg->size_bytes, 0, 0) ||
	    (cfg->gso && cfg->rate_pps && !cfg->echo && batch_enable_gso(&tx)) ||
	    (cfg->echo && batch_alloc(&rx, batch, cfg->size_bytes, 0, 1))) {
		worker_set_state(w, LG_STATE_FAILED, ENOMEM);
		batch_free(&tx);
		batch_free(&rx);
		free(flows);
		free(pfds);
		return;
	}
	for (uint32_t f = (uint32_t)w->index; f < cfg->flows; f += cfg->senders) {
		struct flow_state *fs = &flows[n_flows];

		pfds[n_flows].fd = cfg->send_fds[f];
		pfds[n_flows].events = POLLIN;
		pfds[n_flows].revents = POLLIN;
		fs->fd = cfg->send_fds[f];
		fs->slot = f;
		fs->max_batch = batch;
		fs->gso = tx.gso_segments > 0;
		fs->id = cfg->flow_base + f;
		pace_cursor_init(&fs->next, cfg->start_ns, cfg->rate_pps, cfg->flows, f, 0);
		seq_init(&fs->echo_seq, cfg->first_seq);
		if (cfg->echo) {
			int on = 1;

			/* Best effort: without it returns are timed by loadgen's read alone. */
			setsockopt(fs->fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on));
		}
		n_flows++;
	}
	/* Echo returns wake a sleeping sender (ppoll), unless it spins. */
	n_poll = cfg->echo && !cfg->busy_poll ? n_flows : 0;
	if (cfg->rate_pps) {
		slot_ns = (int64_t)(1000000000ULL * cfg->flows / cfg->rate_pps);
		if (!cfg->busy_poll) {
			struct pace_wake_cost cost = pace_measure_wake();

			tolerance_ns = pace_tolerance_ns(cost);
			/* Echo keeps to the tolerance: a burst would queue at the
			 * reflector and lengthen the round trips it measures. */
			window_ns = cfg->echo ? tolerance_ns : pace_window_ns(cost, tolerance_ns);
		}
	}
	pace_record_mode(st, tolerance_ns, (int)cfg->busy_poll);
	counter_set(&st->counters[LG_CTR_PACE_WINDOW_NS], (uint64_t)window_ns);
	worker_set_state(w, LG_STATE_RUNNING, 0);
	if (cfg->start_ns > clock_now_ns())
		pace_sleep_until(cfg->start_ns);
	for (;;) {
		int64_t now = clock_now_ns(), next_due = INT64_MAX, horizon, wake;
		unsigned sent_any = 0;
		/* Past the deadline, passes go on while they make progress on what fell
		 * due before it, for at most grace_ns; what is left is counted unsent. */
		int final = now >= (deadline = pace_deadline_ns(w->run, cfg->end_ns));

		if (final && !cfg->rate_pps)
			break;
		horizon = now + window_ns < deadline ? now + window_ns : deadline - 1;
		worker_publish(w);
		stats_begin(w);
		for (unsigned i = 0; i < n_flows; i++) {
			struct flow_state *f = &flows[i];

			sent_any += send_flow(cfg, st, f, &tx, now, horizon, slot_ns);
			if (cfg->rate_pps && pace_due_ns(&f->next) < next_due)
				next_due = pace_due_ns(&f->next);
			if (cfg->echo && (pfds[i].revents & POLLIN))
				drain_echoes(cfg, st, f, &rx);
		}
		stats_end(w);
		if (final && (!sent_any || now >= deadline + cfg->grace_ns))
			break;
		if (!cfg->rate_pps)
			continue;
		wake = next_due < deadline ? next_due - tolerance_ns : deadline;
		if (cfg->busy_poll) {
			if (!cfg->echo)
				pace_spin_until(wake);	/* echo: each pass polls the returns */
		} else if (wake > clock_now_ns()) {
			idle_until(pfds, n_poll, wake);
		} else if (!sent_any && !final) {
			/* Due but not sent: the send queues are full (on loopback they
			 * empty as the receiver reads). Block until one has room. */
			wait_writable(pfds, n_flows, cfg->echo, deadline);
		} else {
			for (unsigned i = 0; i < n_poll; i++)
				pfds[i].revents = POLLIN;
		}
	}
	if (cfg->rate_pps) {
		stats_begin(w);
		for (unsigned i = 0; i < n_flows; i++)
			counter_add(&st->counters[LG_CTR_UNSENT],
				    tally_unsent(cfg, flows[i].slot, flows[i].next.k, deadline));
		stats_end(w);
	}
	/* Echo mode: wait up to the timeout for returns still on their way. */
	if (cfg->echo) {
		int64_t until = clock_now_ns() + cfg->grace_ns;

		while (clock_now_ns() < until) {
			worker_publish(w);
			stats_begin(w);
			for (unsigned i = 0; i < n_flows; i++)
				drain_echoes(cfg, st, &flows[i], &rx);
			stats_end(w);
			idle_until(pfds, n_flows, until);
		}
		batch_free(&rx);
	}
	batch_free(&tx);
	free(pfds);
	free(flows);
}

/* The socket's receive timeout (SO_RCVTIMEO), or 100 ms without one. */
static int64_t recv_timeout_ns(int fd)
{
	struct timeval tv = { 0, 0 };
	socklen_t len = sizeof(tv);

	if (getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &len) || (!tv.tv_sec && !tv.tv_usec))
		return 100000000;
	return (int64_t)tv.tv_sec * 1000000000 + (int64_t)tv.tv_usec * 1000;
}

/* busy_poll: recvmmsg without blocking, again and again until something comes
 * or quiet_ns pass (then -1 and EAGAIN, as a blocking wait's timeout gives).
 * Nobody has to wake a spinning receiver: on loopback and veth the kernel
 * delivers in the sender's context, which then pays for no wake-up. */
static int recv_spin(int fd, struct batch *rx, int64_t quiet_ns)
{
	int64_t quiet_from = clock_now_ns();
	int n;

	while ((n = recvmmsg(fd, rx->msgs, rx->n, MSG_DONTWAIT, NULL)) < 0 && errno == EAGAIN &&
	       clock_now_ns() - quiet_from < quiet_ns)
		PACE_CPU_RELAX();
	return n;
}

static void receiver_worker(struct worker *w)
{
	const struct lg_net_config *cfg = w->config;
	struct lg_worker_stats *st = w->stats;
	int fd = cfg->recv_fds[w->index - (int)cfg->senders];
	uint32_t cap = flow_table_slots(cfg);
	struct flow_slot *flows;
	struct batch rx;
	int on = 1, stamped;
	int64_t window_ns = 0, quiet_ns;

	memset(&rx, 0, sizeof(rx));
	flows = calloc(cap, sizeof(*flows));
	if (!flows || batch_alloc(&rx, cfg->batch, cfg->size_bytes > LG_PKT_HEADER_BYTES ?
							cfg->size_bytes : LG_PKT_HEADER_BYTES, cfg->echo, 1)) {
		worker_set_state(w, LG_STATE_FAILED, ENOMEM);
		batch_free(&rx);
		free(flows);
		return;
	}
	/* Best effort: without stamps, arrivals are timed by loadgen's read and
	 * the receiver wakes for every datagram, as it must then. */
	stamped = setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) == 0;
	quiet_ns = cfg->busy_poll ? recv_timeout_ns(fd) : 0;	/* a spin's bound: as a blocking wait's */
	/* Best effort too: loss at loadgen's own socket is then told from the network's. */
	setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof(on));
	/* A reflector answers at once (its delay is in the round trip); a paced
	 * one-way receiver whose arrivals the kernel stamps may sleep a window. */
	if (stamped && !cfg->echo && cfg->rate_pps && !cfg->busy_poll) {
		struct pace_wake_cost cost = pace_measure_wake();

		window_ns = pace_window_ns(cost, pace_tolerance_ns(cost));
	}
	/* receivers block in recvmmsg, or spin on it with busy_poll */
	pace_record_mode(st, 0, (int)cfg->busy_poll);
	counter_set(&st->counters[LG_CTR_PACE_WINDOW_NS], (uint64_t)window_ns);
	worker_set_state(w, LG_STATE_RUNNING, 0);
	for (;;) {
		int n, i;
		int64_t now, offset;
		uint64_t by_kernel = 0, drops = 0;

		for (i = 0; i < (int)rx.n; i++) {
			if (cfg->echo) {
				rx.msgs[i].msg_hdr.msg_name = &rx.addrs[i];
				rx.msgs[i].msg_hdr.msg_namelen = sizeof(rx.addrs[i]);
			}
			rx.msgs[i].msg_hdr.msg_controllen = STAMP_CTRL_BYTES;	/* the kernel shrinks it */
		}
		/* MSG_WAITFORONE: block for the first, take what else is queued; the
		 * socket's receive timeout bounds the wait so the stop is seen. */
		n = cfg->busy_poll ? recv_spin(fd, &rx, quiet_ns) : recvmmsg(fd, rx.msgs, rx.n, MSG_WAITFORONE, NULL);
		now = clock_now_ns();
		offset = real_to_mono_ns();
		worker_publish(w);
		stats_begin(w);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				count_error(st, errno);
		} else {
			for (i = 0; i < n; i++) {
				/* a stamp after our read: the clocks were stepped between; use the read */
				int64_t krx = kernel_rx_ns(&rx.msgs[i].msg_hdr, offset);
				int by_stamp = krx && krx <= now;
				uint32_t d = socket_drops(&rx.msgs[i].msg_hdr);

				drops = d > drops ? d : drops;
				if (arrival_count(cfg, st, flows, cap, rx.iov[i].iov_base, rx.msgs[i].msg_len,
						  by_stamp ? krx : now))
					by_kernel += (uint64_t)by_stamp;
			}
			counter_add(&st->counters[LG_CTR_KERNEL_STAMPED], by_kernel);
			counter_max(&st->counters[LG_CTR_SOCKET_DROPS], drops);
			if (cfg->echo && n > 0) {
				/* Send each datagram back unchanged, to where it came from,
				 * without its receive stamp (no control message to send). */
				for (i = 0; i < n; i++) {
					rx.iov[i].iov_len = rx.msgs[i].msg_len;
					rx.msgs[i].msg_hdr.msg_controllen = 0;
				}
				for (int done = 0; done < n;) {
					int ret = sendmmsg(fd, rx.msgs + done, (unsigned)(n - done), 0);

					if (ret <= 0) {
						if (ret < 0)
							count_error(st, errno);
						break;
					}
					done += ret;
				}
				for (i = 0; i < n; i++)
					rx.iov[i].iov_len = rx.size_bytes;
			}
		}
		stats_end(w);
		if (receiver_may_stop(w, cfg, now, n))
			break;
		/* Drained (a full batch means more is waiting): let a window's worth gather. */
		if (window_ns && n >= 0 && (unsigned)n < rx.n)
			pace_sleep_until(now + window_ns);
	}
	batch_free(&rx);
	free(flows);
}

static void net_worker(struct worker *w)
{
	const struct lg_net_config *cfg = w->config;

	if ((uint32_t)w->index < cfg->senders)
		worker_name(cfg->engine == LG_NET_ENGINE_PACKET ? "lg-pkt-send" :
			    cfg->engine == LG_NET_ENGINE_XDP ? "lg-xdp-send" : "lg-send", w->index);
	else
		worker_name(cfg->rx_engine == LG_NET_RX_ENGINE_PACKET ? "lg-pkt-recv" : "lg-recv",
			    w->index - (int)cfg->senders);
	worker_pin(w);
	if ((uint32_t)w->index < cfg->senders && cfg->engine == LG_NET_ENGINE_PACKET)
		packet_sender_worker(w);
	else if ((uint32_t)w->index < cfg->senders && cfg->engine == LG_NET_ENGINE_XDP)
		xdp_sender_worker(w);
	else if ((uint32_t)w->index < cfg->senders)
		sender_worker(w);
	else if (cfg->rx_engine == LG_NET_RX_ENGINE_PACKET)
		packet_receiver_worker(w);
	else
		receiver_worker(w);
}

int lg_net_start(const struct lg_net_config *cfg, struct lg_run **out)
{
	struct lg_net_config *copy;
	struct lg_run *run;
	size_t n_fds, n_workers, arrays_bytes;
	int32_t *arrays, *cpus;
	int err, with_packet;

	if (!cfg || cfg->flows == 0 || cfg->flows > MAX_FLOWS || cfg->senders + cfg->receivers == 0 ||
	    cfg->size_bytes < LG_PKT_HEADER_BYTES || cfg->size_bytes > LG_PKT_MAX_BYTES ||
	    cfg->batch == 0 || cfg->batch > MAX_BATCH || (cfg->senders && !cfg->send_fds) ||
	    (cfg->receivers && !cfg->recv_fds) || (cfg->senders && cfg->flows < cfg->senders) ||
	    cfg->engine > LG_NET_ENGINE_XDP ||
	    (cfg->engine != LG_NET_ENGINE_SOCKET && cfg->senders && packet_check(cfg)) ||
	    cfg->rx_engine > LG_NET_RX_ENGINE_PACKET ||
	    (cfg->rx_engine == LG_NET_RX_ENGINE_PACKET && cfg->receivers && packet_rx_check(cfg)))
		return -EINVAL;
	/* the raw engines (packet, xdp) describe their frames in cfg->packet */
	with_packet = cfg->engine != LG_NET_ENGINE_SOCKET && cfg->senders;
	n_workers = cfg->senders + cfg->receivers;
	err = run_alloc((int)n_workers, &run);
	if (err)
		return err;
	/* A private copy of the config and its arrays: the caller may free its own. */
	n_fds = (cfg->senders ? cfg->flows : 0) + cfg->receivers;
	arrays_bytes = (n_fds + n_workers) * sizeof(int32_t);
	/* the packet engine's frames after the arrays, 8-aligned for their struct */
	arrays_bytes = (arrays_bytes + 7) & ~(size_t)7;
	copy = malloc(sizeof(*copy) + sizeof(*copy->packet_rx) + arrays_bytes +
		      (with_packet ? packet_copy_bytes(cfg) : 0));
	if (!copy) {
		lg_run_free(run);
		return -ENOMEM;
	}
	*copy = *cfg;
	if (cfg->rx_engine == LG_NET_RX_ENGINE_PACKET && cfg->receivers) {
		struct lg_packet_rx_config *rx = (struct lg_packet_rx_config *)(copy + 1);

		*rx = *cfg->packet_rx;
		copy->packet_rx = rx;
	} else {
		copy->packet_rx = NULL;
	}
	arrays = (int32_t *)((struct lg_packet_rx_config *)(copy + 1) + 1);
	cpus = arrays + n_fds;
	if (cfg->senders) {
		memcpy(arrays, cfg->send_fds, cfg->flows * sizeof(int32_t));
		copy->send_fds = arrays;
	}
	if (cfg->receivers) {
		memcpy(arrays + (cfg->senders ? cfg->flows : 0), cfg->recv_fds, cfg->receivers * sizeof(int32_t));
		copy->recv_fds = arrays + (cfg->senders ? cfg->flows : 0);
	}
	for (size_t i = 0; i < n_workers; i++) {
		if (i < cfg->senders)
			cpus[i] = cfg->send_cpus ? cfg->send_cpus[i] : -1;
		else
			cpus[i] = cfg->recv_cpus ? cfg->recv_cpus[i - cfg->senders] : -1;
	}
	copy->send_cpus = cpus;
	copy->recv_cpus = cpus + cfg->senders;
	copy->packet = with_packet ? packet_copy(cfg, (char *)arrays + arrays_bytes) : NULL;
	run->config_copy = copy;
	err = run_start(run, net_worker, copy, cpus);
	if (err) {
		lg_run_free(run);
		return err;
	}
	*out = run;
	return 0;
}

int lg_seq_replay(const uint32_t *seqs, uint32_t n, uint32_t first_seq, uint64_t out[5])
{
	struct seq_tracker t;
	uint64_t skipped, gaps = 0;

	seq_init(&t, first_seq);
	memset(out, 0, 5 * sizeof(uint64_t));
	for (uint32_t i = 0; i < n; i++) {
		switch (seq_track(&t, seqs[i], &skipped)) {
		case SEQ_IN_ORDER:
			out[0]++;
			break;
		case SEQ_AHEAD:
			out[0]++;
			gaps += skipped;
			break;
		case SEQ_REORDERED:
			out[1]++;
			gaps--;
			break;
		case SEQ_DUPLICATED:
			out[2]++;
			break;
		case SEQ_TOO_OLD:
			out[3]++;
			break;
		}
	}
	out[4] = gaps;
	return 0;
}
