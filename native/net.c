/*
 * net.c: UDP senders and receivers.
 *
 * Senders: flow f belongs to sender f % senders and has its own connected,
 * non-blocking socket (its own source port, so its own 5-tuple for RSS).
 * Open loop: datagram k of flow f of F is scheduled at
 *     start_ns + (k * F + f) * 1e9 / rate_pps,
 * so the flows interleave into one evenly spaced stream. Each pass computes
 * how many datagrams of each flow are due and sends them with one sendmmsg
 * per flow, batch at most; gaps longer than SPIN_NS are slept, shorter ones
 * spun, and nothing ever sleeps per packet. A sender that falls behind sends
 * its backlog at full speed and never skips a datagram.
 *
 * Receivers: one socket each (SO_REUSEPORT spreads flows over them), drained
 * with recvmmsg; each tracks every flow's sequence numbers (seq.h). In echo
 * mode they send every datagram back unchanged and the sender times it.
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "clock.h"
#include "hdr.h"
#include "run.h"
#include "seq.h"

/* Gaps longer than this are slept (waking SPIN_NS / 2 early), shorter ones
 * spun: with 1 ns timer slack a wake-up lands within tens of us in a VM. */
#define SPIN_NS 50000LL
#define MAX_BATCH LG_MAX_BATCH
#define MAX_FLOWS LG_MAX_FLOWS

struct pkt_header {
	uint32_t magic;
	uint32_t flow;
	uint32_t seq;
	uint32_t run_tag;
	int64_t sched_ns;
	int64_t send_ns;
};

_Static_assert(sizeof(struct pkt_header) == LG_PKT_HEADER_BYTES, "wire header is 32 bytes");

/* One batch of datagram buffers with their iovecs and headers, for sendmmsg/recvmmsg. */
struct batch {
	unsigned n;
	unsigned size_bytes;
	unsigned char *bufs;
	struct iovec *iov;
	struct mmsghdr *msgs;
	struct sockaddr_storage *addrs;	/* receivers: sources, for echo */
};

struct flow_state {
	int fd;
	uint32_t slot;		/* this host's flow number: its place in the schedule */
	uint32_t id;		/* on the wire: flow_base + slot */
	uint64_t k;		/* next datagram's index in this flow's schedule */
	struct seq_tracker echo_seq;	/* echo mode: the returns */
};

static int batch_alloc(struct batch *b, unsigned n, unsigned size_bytes, int with_addrs)
{
	memset(b, 0, sizeof(*b));
	b->n = n;
	b->size_bytes = size_bytes;
	b->bufs = calloc(n, size_bytes);
	b->iov = calloc(n, sizeof(*b->iov));
	b->msgs = calloc(n, sizeof(*b->msgs));
	b->addrs = with_addrs ? calloc(n, sizeof(*b->addrs)) : NULL;
	if (!b->bufs || !b->iov || !b->msgs || (with_addrs && !b->addrs))
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		/* Padding carries a non-zero pattern so no layer can compress it away. */
		for (unsigned j = LG_PKT_HEADER_BYTES; j < size_bytes; j++)
			b->bufs[(size_t)i * size_bytes + j] = (unsigned char)(0xa5 ^ j);
		b->iov[i].iov_base = b->bufs + (size_t)i * size_bytes;
		b->iov[i].iov_len = size_bytes;
		b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
		b->msgs[i].msg_hdr.msg_iovlen = 1;
	}
	return 0;
}

static void batch_free(struct batch *b)
{
	free(b->bufs);
	free(b->iov);
	free(b->msgs);
	free(b->addrs);
}

/* Little-endian on the wire; loadgen runs on little-endian hosts (x86-64, arm64). */
static inline void header_write(void *buf, uint32_t flow, uint32_t seq, uint32_t run_tag,
				int64_t sched_ns, int64_t send_ns)
{
	struct pkt_header h = { LG_PKT_MAGIC, flow, seq, run_tag, sched_ns, send_ns };

	memcpy(buf, &h, sizeof(h));
}

static inline int header_read(const void *buf, size_t len, uint32_t run_tag, struct pkt_header *h)
{
	if (len < sizeof(*h))
		return 0;
	memcpy(h, buf, sizeof(*h));
	/* run_tag 0: a standalone server takes every run's datagrams */
	return h->magic == LG_PKT_MAGIC && (run_tag == 0 || h->run_tag == run_tag);
}

void lg_pkt_encode(void *buf, uint32_t flow, uint32_t seq, uint32_t run_tag, int64_t sched_ns,
		   int64_t send_ns)
{
	header_write(buf, flow, seq, run_tag, sched_ns, send_ns);
}

static int64_t net_deadline(const struct lg_run *run, const struct lg_net_config *cfg)
{
	int64_t stop = run_stop_ns(run);

	return stop < cfg->end_ns ? stop : cfg->end_ns;
}

static void sleep_until_ns(int64_t t_ns)
{
	struct timespec ts = { .tv_sec = t_ns / 1000000000LL, .tv_nsec = t_ns % 1000000000LL };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static inline int64_t flow_sched_ns(const struct lg_net_config *cfg, uint32_t flow, uint64_t k)
{
	unsigned __int128 slot = (unsigned __int128)k * cfg->flows + flow;

	return cfg->start_ns + (int64_t)(slot * 1000000000ULL / cfg->rate_pps);
}

/* How many of flow slot's datagrams are scheduled at or before t_ns. */
static inline uint64_t flow_count_by(const struct lg_net_config *cfg, uint32_t slot, int64_t t_ns)
{
	int64_t t = t_ns - cfg->start_ns;
	unsigned __int128 slots;

	if (t < 0)
		return 0;
	slots = (unsigned __int128)t * cfg->rate_pps / 1000000000ULL;	/* slots elapsed */
	if (slots < slot)
		return 0;
	return (uint64_t)((slots - slot) / cfg->flows) + 1;
}

/* How many of this flow's datagrams are scheduled before now (and the deadline) and not yet sent. */
static inline uint64_t flow_due(const struct lg_net_config *cfg, const struct flow_state *f,
				int64_t now_ns, int64_t deadline_ns)
{
	uint64_t k_due = flow_count_by(cfg, f->slot, now_ns < deadline_ns ? now_ns : deadline_ns - 1);

	return k_due > f->k ? k_due - f->k : 0;
}

/* Datagrams of the window that a sender never got out: the schedule fell too far behind. */
static uint64_t flow_unsent(const struct lg_net_config *cfg, const struct flow_state *f, int64_t deadline_ns)
{
	uint64_t end = flow_count_by(cfg, f->slot, deadline_ns - 1);
	uint64_t first = flow_count_by(cfg, f->slot, cfg->ramp_end_ns - 1);	/* first in the window */
	uint64_t from = f->k > first ? f->k : first;

	return end > from ? end - from : 0;
}

static void count_error(struct lg_worker_stats *st, int err)
{
	counter_add(&st->errno_counts[err < LG_ERRNO_SLOTS ? err : LG_ERRNO_SLOTS - 1], 1);
	counter_add(&st->counters[LG_CTR_ERRORS], 1);
	if (err == ECONNREFUSED)
		counter_add(&st->counters[LG_CTR_REFUSED], 1);
}

/* Send n due datagrams of flow f (n <= batch); returns how many the kernel took. */
static unsigned send_flow(const struct lg_net_config *cfg, struct lg_worker_stats *st,
			  struct flow_state *f, struct batch *b, unsigned n, int64_t now_ns,
			  int64_t slot_ns)
{
	uint32_t seq0 = cfg->first_seq + (uint32_t)f->k;
	uint64_t in_window = 0, lag_sum = 0, lag_max = 0, late = 0;
	int ret;

	for (unsigned i = 0; i < n; i++) {
		int64_t sched = cfg->rate_pps ? flow_sched_ns(cfg, f->slot, f->k + i) : now_ns;

		header_write(b->iov[i].iov_base, f->id, seq0 + i, cfg->run_tag,
			     sched - cfg->start_ns, now_ns - cfg->start_ns);
	}
	ret = sendmmsg(f->fd, b->msgs, n, MSG_DONTWAIT);
	if (ret < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR)
			return 0;	/* the queue is full: the backlog waits, nothing is skipped */
		/* A failed datagram still consumes its slot, or the flow would stall on it. */
		if (cfg->rate_pps == 0 || flow_sched_ns(cfg, f->slot, f->k) >= cfg->ramp_end_ns)
			count_error(st, errno);
		f->k++;
		return 0;
	}
	/* Tally the batch locally and publish once: these are the hot path's stores. */
	if (!cfg->rate_pps) {
		in_window = now_ns >= cfg->ramp_end_ns ? (uint64_t)ret : 0;
	} else {
		for (int i = 0; i < ret; i++) {
			const struct pkt_header *h = b->iov[i].iov_base;
			int64_t sched = cfg->start_ns + h->sched_ns, lag = now_ns - sched;

			if (sched < cfg->ramp_end_ns)
				continue;
			in_window++;
			lag_sum += (uint64_t)lag;
			if ((uint64_t)lag > lag_max)
				lag_max = (uint64_t)lag;
			late += lag > slot_ns;
		}
		counter_add(&st->counters[LG_CTR_LAG_SUM_NS], lag_sum);
		counter_max(&st->counters[LG_CTR_LAG_MAX_NS], lag_max);
		counter_add(&st->counters[LG_CTR_LATE_OPS], late);
	}
	counter_add(&st->counters[LG_CTR_SENT], in_window);
	counter_add(&st->counters[LG_CTR_SENT_BYTES], in_window * b->size_bytes);
	f->k += (uint64_t)ret;
	return (unsigned)ret;
}

/* Account one arriving datagram at a receiver, or an echo at a sender. */
static void track_arrival(const struct lg_net_config *cfg, struct lg_worker_stats *st,
			  struct seq_tracker *t, const struct pkt_header *h, size_t len,
			  int64_t now_ns, int is_echo)
{
	uint64_t skipped;
	enum seq_verdict v = seq_track(t, h->seq, &skipped);
	uint64_t *c = st->counters;
	int64_t sched = cfg->start_ns + h->sched_ns, sent = cfg->start_ns + h->send_ns;

	if (sched < cfg->ramp_end_ns)
		return;
	if (is_echo && cfg->grace_ns && now_ns - sent > cfg->grace_ns) {
		counter_add(&c[LG_CTR_LATE], 1);	/* past the timeout: lost, not timed */
		return;
	}
	counter_add(&c[LG_CTR_RECEIVED], 1);
	counter_add(&c[LG_CTR_RECEIVED_BYTES], len);
	switch (v) {
	case SEQ_DUPLICATED:
		counter_add(&c[LG_CTR_DUPLICATED], 1);
		return;		/* a copy is not timed twice */
	case SEQ_REORDERED:
		counter_add(&c[LG_CTR_REORDERED], 1);
		break;
	case SEQ_TOO_OLD:
		counter_add(&c[LG_CTR_TOO_OLD], 1);
		break;
	case SEQ_AHEAD:
		counter_add(&c[LG_CTR_SKIPPED], skipped);
		break;
	default:
		break;
	}
	hdr_record(st->hist[LG_HIST_LATENCY_PACKET], now_ns - sched);
	hdr_record(st->hist[LG_HIST_SERVICE_PACKET], now_ns - sent);
}

/* Echo mode, sender side: take every return waiting on a flow's socket. */
static void drain_echoes(const struct lg_net_config *cfg, struct lg_worker_stats *st,
			 struct flow_state *f, struct batch *rx)
{
	for (;;) {
		int n = recvmmsg(f->fd, rx->msgs, rx->n, MSG_DONTWAIT, NULL);
		int64_t now;

		if (n <= 0) {
			if (n < 0 && errno == ECONNREFUSED)
				count_error(st, ECONNREFUSED);	/* ICMP unreachable, reported once here */
			return;
		}
		now = clock_now_ns();
		for (int i = 0; i < n; i++) {
			struct pkt_header h;

			if (!header_read(rx->iov[i].iov_base, rx->msgs[i].msg_len, cfg->run_tag, &h) ||
			    h.flow != f->id) {
				counter_add(&st->counters[LG_CTR_FOREIGN], 1);
				continue;
			}
			track_arrival(cfg, st, &f->echo_seq, &h, rx->msgs[i].msg_len, now, 1);
		}
		if ((unsigned)n < rx->n)
			return;
	}
}

/* Sleep until t_ns, waking early for returns on any of the n sockets (echo mode). */
static void idle_until(struct pollfd *pfds, unsigned n, int64_t t_ns)
{
	int64_t left = t_ns - clock_now_ns();
	struct timespec ts;

	if (left <= 0)
		return;
	if (n == 0) {
		sleep_until_ns(t_ns);
		return;
	}
	ts.tv_sec = left / 1000000000LL;
	ts.tv_nsec = left % 1000000000LL;
	ppoll(pfds, n, &ts, NULL);
}

static void sender_worker(struct worker *w)
{
	const struct lg_net_config *cfg = w->config;
	struct lg_worker_stats *st = w->stats;
	unsigned n_flows = 0, batch = cfg->batch;
	struct flow_state *flows;
	struct pollfd *pfds;
	struct batch tx, rx;
	int64_t slot_ns = 0, deadline;

	flows = calloc((cfg->flows + cfg->senders - 1) / cfg->senders, sizeof(*flows));
	pfds = calloc((cfg->flows + cfg->senders - 1) / cfg->senders, sizeof(*pfds));
	memset(&tx, 0, sizeof(tx));
	memset(&rx, 0, sizeof(rx));
	if (!flows || !pfds || batch_alloc(&tx, batch, cfg->size_bytes, 0) ||
	    (cfg->echo && batch_alloc(&rx, batch, cfg->size_bytes, 0))) {
		worker_set_state(w, LG_STATE_FAILED, ENOMEM);
		batch_free(&tx);
		batch_free(&rx);
		free(flows);
		free(pfds);
		return;
	}
	for (uint32_t f = (uint32_t)w->index; f < cfg->flows; f += cfg->senders) {
		pfds[n_flows].fd = cfg->send_fds[f];
		pfds[n_flows].events = POLLIN;
		flows[n_flows].fd = cfg->send_fds[f];
		flows[n_flows].slot = f;
		flows[n_flows].id = cfg->flow_base + f;
		seq_init(&flows[n_flows].echo_seq, cfg->first_seq);
		n_flows++;
	}
	if (cfg->rate_pps)
		slot_ns = (int64_t)(1000000000ULL * cfg->flows / cfg->rate_pps);
	worker_set_state(w, LG_STATE_RUNNING, 0);
	if (cfg->start_ns > clock_now_ns())
		sleep_until_ns(cfg->start_ns);
	for (;;) {
		int64_t now = clock_now_ns(), next_due = INT64_MAX;
		unsigned sent_any = 0;
		/* Past the deadline, passes go on while they make progress on what fell
		 * due before it, for at most grace_ns; what is left is counted unsent. */
		int final = now >= (deadline = net_deadline(w->run, cfg));

		if (final && !cfg->rate_pps)
			break;
		worker_publish(w);
		stats_begin(w);
		for (unsigned i = 0; i < n_flows; i++) {
			struct flow_state *f = &flows[i];
			uint64_t due = cfg->rate_pps ? flow_due(cfg, f, now, deadline) : batch;

			if (due) {
				sent_any += send_flow(cfg, st, f, &tx, due < batch ? (unsigned)due : batch,
						      now, slot_ns);
			} else {
				int64_t t = flow_sched_ns(cfg, f->slot, f->k);

				if (t < next_due)
					next_due = t;
			}
			if (cfg->echo)
				drain_echoes(cfg, st, f, &rx);
		}
		stats_end(w);
		if (final && (!sent_any || now >= deadline + cfg->grace_ns))
			break;
		if (!sent_any && cfg->rate_pps && next_due != INT64_MAX) {
			if (next_due > deadline)
				next_due = deadline;
			/* Sleep the long part of a gap; the short remainder is spun, yielding
			 * each turn so a receiver sharing this core is not starved. */
			if (next_due - now > SPIN_NS)
				idle_until(pfds, cfg->echo ? n_flows : 0, next_due - SPIN_NS / 2);
			else
				sched_yield();
		}
	}
	if (cfg->rate_pps) {
		stats_begin(w);
		for (unsigned i = 0; i < n_flows; i++)
			counter_add(&st->counters[LG_CTR_UNSENT], flow_unsent(cfg, &flows[i], deadline));
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

/* A receiver's flows, keyed by (run_tag, flow id): runs that share a server
 * and their flow ids never disturb each other's sequence numbers. */
struct flow_slot {
	uint32_t used;
	uint32_t tag;
	uint32_t flow;
	struct seq_tracker t;
};

static struct seq_tracker *flow_lookup(struct flow_slot *tab, uint32_t cap, uint32_t tag, uint32_t flow,
				       uint32_t first_seq)
{
	uint32_t h = (tag * 2654435761u) ^ (flow * 40503u);

	for (uint32_t i = 0; i < cap; i++) {
		struct flow_slot *e = &tab[(h + i) % cap];

		if (!e->used) {
			e->used = 1;
			e->tag = tag;
			e->flow = flow;
			seq_init(&e->t, first_seq);
			return &e->t;
		}
		if (e->tag == tag && e->flow == flow)
			return &e->t;
	}
	return NULL;	/* more flows than the table holds: counted foreign */
}

/* Receivers beside senders in one run stop once every sender has finished
 * and the socket has run dry; alone (a remote peer), grace_ns after the end. */
static int receiver_may_stop(struct worker *w, const struct lg_net_config *cfg, int64_t now_ns, int received)
{
	int64_t end = net_deadline(w->run, cfg);

	if (cfg->senders == 0)
		return now_ns >= end + cfg->grace_ns;
	/* A bound for datagrams that never stop coming (another process's). Senders
	 * may pass the deadline by grace_ns for the backlog, then by grace_ns for echoes. */
	if (now_ns >= end + 2 * cfg->grace_ns + 1000000000LL)
		return 1;
	for (uint32_t i = 0; i < cfg->senders; i++) {
		uint64_t state = __atomic_load_n(&w->run->workers[i].stats->counters[LG_CTR_STATE],
						 __ATOMIC_ACQUIRE);

		if (state != LG_STATE_DONE && state != LG_STATE_FAILED)
			return 0;
	}
	return received <= 0;	/* the last wait timed out: nothing is left in flight */
}

static void receiver_worker(struct worker *w)
{
	const struct lg_net_config *cfg = w->config;
	struct lg_worker_stats *st = w->stats;
	int fd = cfg->recv_fds[w->index - (int)cfg->senders];
	/* Twice the flows keeps linear probing short. */
	uint32_t cap = 2 * cfg->flows;
	struct flow_slot *flows;
	struct batch rx;

	flows = calloc(cap, sizeof(*flows));
	if (!flows || batch_alloc(&rx, cfg->batch, cfg->size_bytes > LG_PKT_HEADER_BYTES ?
							cfg->size_bytes : LG_PKT_HEADER_BYTES, cfg->echo)) {
		worker_set_state(w, LG_STATE_FAILED, ENOMEM);
		free(flows);
		return;
	}
	worker_set_state(w, LG_STATE_RUNNING, 0);
	for (;;) {
		int n, i;
		int64_t now;

		if (cfg->echo)
			for (i = 0; i < (int)rx.n; i++) {
				rx.msgs[i].msg_hdr.msg_name = &rx.addrs[i];
				rx.msgs[i].msg_hdr.msg_namelen = sizeof(rx.addrs[i]);
			}
		/* MSG_WAITFORONE: block for the first, take what else is queued; the
		 * socket's receive timeout bounds the wait so the stop is seen. */
		n = recvmmsg(fd, rx.msgs, rx.n, MSG_WAITFORONE, NULL);
		now = clock_now_ns();
		worker_publish(w);
		stats_begin(w);
		if (n < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				count_error(st, errno);
		} else {
			for (i = 0; i < n; i++) {
				struct pkt_header h;
				struct seq_tracker *t = NULL;

				if (header_read(rx.iov[i].iov_base, rx.msgs[i].msg_len, cfg->run_tag, &h))
					t = flow_lookup(flows, cap, h.run_tag, h.flow, cfg->first_seq);
				if (!t) {
					counter_add(&st->counters[LG_CTR_FOREIGN], 1);
					continue;
				}
				track_arrival(cfg, st, t, &h, rx.msgs[i].msg_len, now, 0);
			}
			if (cfg->echo && n > 0) {
				/* Send each datagram back unchanged, to where it came from. */
				for (i = 0; i < n; i++)
					rx.iov[i].iov_len = rx.msgs[i].msg_len;
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
	}
	batch_free(&rx);
	free(flows);
}

static void net_worker(struct worker *w)
{
	const struct lg_net_config *cfg = w->config;

	worker_pin(w);
	if ((uint32_t)w->index < cfg->senders)
		sender_worker(w);
	else
		receiver_worker(w);
}

int lg_net_start(const struct lg_net_config *cfg, struct lg_run **out)
{
	struct lg_net_config *copy;
	struct lg_run *run;
	size_t n_fds, n_workers;
	int32_t *arrays, *cpus;
	int err;

	if (!cfg || cfg->flows == 0 || cfg->flows > MAX_FLOWS || cfg->senders + cfg->receivers == 0 ||
	    cfg->size_bytes < LG_PKT_HEADER_BYTES || cfg->size_bytes > LG_PKT_MAX_BYTES ||
	    cfg->batch == 0 || cfg->batch > MAX_BATCH || (cfg->senders && !cfg->send_fds) ||
	    (cfg->receivers && !cfg->recv_fds) || (cfg->senders && cfg->flows < cfg->senders))
		return -EINVAL;
	n_workers = cfg->senders + cfg->receivers;
	err = run_alloc((int)n_workers, &run);
	if (err)
		return err;
	/* A private copy of the config and its arrays: the caller may free its own. */
	n_fds = (cfg->senders ? cfg->flows : 0) + cfg->receivers;
	copy = malloc(sizeof(*copy) + (n_fds + n_workers) * sizeof(int32_t));
	if (!copy) {
		lg_run_free(run);
		return -ENOMEM;
	}
	*copy = *cfg;
	arrays = (int32_t *)(copy + 1);
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
