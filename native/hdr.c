/* hdr.c: exported wrappers of the recorder, for tests and for Python. */
#include "hdr.h"

void lg_hdr_record(uint64_t *counts, int64_t value_ns)
{
	hdr_record(counts, value_ns);
}

int lg_hdr_index(int64_t value_ns)
{
	return hdr_index(value_ns);
}

int lg_hdr_counts_len(void)
{
	return LG_HDR_COUNTS_LEN;
}
