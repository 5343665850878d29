/*
 * pkt.h: the datagram header every loadgen payload starts with (the layout
 * is in loadgen.h), written by every sender engine and read by the receivers.
 */
#ifndef LG_PKT_H
#define LG_PKT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "loadgen.h"

struct pkt_header {
	uint32_t magic;
	uint32_t flow;
	uint32_t seq;
	uint32_t run_tag;
	int64_t sched_ns;
	int64_t send_ns;
};

_Static_assert(sizeof(struct pkt_header) == LG_PKT_HEADER_BYTES, "wire header is 32 bytes");

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

#endif
