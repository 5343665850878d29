/* echo.h: echo returns for senders that send by other means than their flows'
 * UDP sockets (packet.c). The returns still arrive on those sockets, since
 * each frame carries its flow's socket's address and port as its source;
 * net.c drains and times them exactly as for its own senders. */
#ifndef LG_ECHO_H
#define LG_ECHO_H

#include <stdint.h>
#include "loadgen.h"

struct echo_rx;

/* The returns of sender's flows (f % senders == sender) of cfg; NULL when out of memory. */
struct echo_rx *echo_rx_open(const struct lg_net_config *cfg, int sender);
/* Take and time every return waiting; the caller brackets it with stats_begin/stats_end. */
void echo_rx_drain(struct echo_rx *e, const struct lg_net_config *cfg, struct lg_worker_stats *st);
/* Sleep until until_ns, or until a return arrives. */
void echo_rx_idle(struct echo_rx *e, int64_t until_ns);
void echo_rx_close(struct echo_rx *e);

#endif
