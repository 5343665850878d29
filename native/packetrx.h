/* packetrx.h: the packet receivers' entry points inside the library (net.c starts them). */
#ifndef LG_PACKETRX_H
#define LG_PACKETRX_H

#include "loadgen.h"
#include "run.h"

/* 0 if cfg->packet_rx is a usable ring geometry for cfg, else -EINVAL. */
int packet_rx_check(const struct lg_net_config *cfg);
/* A receiver worker on its own AF_PACKET RX ring: w->index - senders is its receiver number. */
void packet_receiver_worker(struct worker *w);

#endif
