/* packet.h: the raw engines' entry points inside the library (net.c starts their senders). */
#ifndef LG_PACKET_H
#define LG_PACKET_H

#include <stddef.h>
#include "loadgen.h"
#include "run.h"

/* 0 if cfg->packet is a usable frame description for cfg's raw engine (packet or xdp), else -EINVAL. */
int packet_check(const struct lg_net_config *cfg);
/* Bytes a private copy of cfg->packet and its arrays takes. */
size_t packet_copy_bytes(const struct lg_net_config *cfg);
/* Copy cfg->packet and its arrays into mem (packet_copy_bytes long); returns the copy. */
const struct lg_packet_config *packet_copy(const struct lg_net_config *cfg, void *mem);
/* A sender worker on its own AF_PACKET TX ring: w->index is its sender number. */
void packet_sender_worker(struct worker *w);
/* A sender worker on its own AF_XDP socket (xdp.c): w->index is its sender number. */
void xdp_sender_worker(struct worker *w);

#endif
