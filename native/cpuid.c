/* cpuid.c: the hypervisor's CPUID vendor signature, which no file in /sys or /proc shows. */
#include <string.h>
#include "loadgen.h"

int lg_hypervisor_vendor(char out[13])
{
#if defined(__x86_64__) || defined(__i386__)
	unsigned a = 0x40000000, b = 0, c = 0, d = 0;

	/* Leaf 1, ECX bit 31: "running under a hypervisor" (Intel SDM vol. 2A, CPUID). */
	unsigned a1 = 1, b1, c1 = 0, d1;

	__asm__ volatile("cpuid" : "+a"(a1), "=b"(b1), "+c"(c1), "=d"(d1));
	if (!(c1 & (1u << 31)))
		return 0;
	/* Leaf 0x40000000: the vendor signature in EBX, ECX, EDX ("KVMKVMKVM", "XenVMMXenVMM"...). */
	__asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
	memcpy(out, &b, 4);
	memcpy(out + 4, &c, 4);
	memcpy(out + 8, &d, 4);
	out[12] = 0;
	return 1;
#else
	(void)out;
	return -95;	/* -EOPNOTSUPP: no CPUID here */
#endif
}
