/*
 * nvme.c: what the NVMe passthrough engine needs besides the disk worker's
 * loop (disk.c): Identify Namespace through the ioctl, the probe of a ring
 * with 128-byte SQEs and 32-byte CQEs, and test hooks for the command
 * encoding (nvme.h states the layout and cites the specification).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include "loadgen.h"
#include "nvme.h"
#include "uring.h"

int lg_nvme_encode(void *out, int32_t is_write, uint32_t nsid, uint32_t lba_shift, uint64_t offset_bytes,
		   uint32_t length_bytes, uint64_t addr)
{
	uint64_t lba_mask;

	if (!out || lba_shift < NVME_MIN_LBA_SHIFT || lba_shift > NVME_MAX_LBA_SHIFT)
		return -EINVAL;
	lba_mask = (1ULL << lba_shift) - 1;
	if (length_bytes == 0 || (offset_bytes & lba_mask) || (length_bytes & lba_mask) ||
	    (length_bytes >> lba_shift) > NVME_MAX_NLB)
		return -EINVAL;
	nvme_encode_rw(out, is_write != 0, nsid, offset_bytes >> lba_shift, length_bytes >> lba_shift, addr,
		       length_bytes);
	return (int)sizeof(struct nvme_uring_cmd);
}

int lg_nvme_sqe(void *out, int32_t fd, int32_t fixed_file, int32_t buf_index, int32_t is_write, uint32_t nsid,
		uint32_t lba_shift, uint64_t offset_bytes, uint32_t length_bytes, uint64_t addr)
{
	struct io_uring_sqe *sqe = out;

	if (!out || lba_shift < NVME_MIN_LBA_SHIFT || lba_shift > NVME_MAX_LBA_SHIFT)
		return -EINVAL;
	memset(sqe, 0, 2 * sizeof(*sqe));	/* as uring_get_sqe leaves a 128-byte slot */
	nvme_prep_rw(sqe, fd, fixed_file, buf_index, is_write, nsid, lba_shift, offset_bytes, length_bytes,
		     (const void *)(uintptr_t)addr);
	return (int)(2 * sizeof(*sqe));
}

/* Identify Namespace for nsid into buf (NVME_IDENTIFY_BYTES), as the admin ioctl takes it. */
static void encode_identify_ns(struct nvme_passthru_cmd *cmd, uint32_t nsid, void *buf)
{
	*cmd = (struct nvme_passthru_cmd){
		.opcode = NVME_ADMIN_OPC_IDENTIFY,
		.nsid = nsid,
		.addr = (uint64_t)(uintptr_t)buf,
		.data_len = NVME_IDENTIFY_BYTES,
		.cdw10 = NVME_CNS_NAMESPACE,	/* CNS, bits 07:00 */
	};
}

int lg_nvme_encode_identify(void *out, uint32_t nsid, uint64_t addr)
{
	if (!out)
		return -EINVAL;
	encode_identify_ns(out, nsid, (void *)(uintptr_t)addr);
	return (int)sizeof(struct nvme_passthru_cmd);
}

int lg_nvme_identify(int32_t fd, void *out)
{
	struct nvme_passthru_cmd cmd;
	void *buf;
	int nsid, ret;

	/* NVME_IOCTL_ID: the namespace behind a namespace's device; ENOTTY on anything else. */
	nsid = ioctl(fd, NVME_IOCTL_ID);
	if (nsid < 0)
		return -errno;
	if (nsid == 0)
		return -ENOTTY;	/* a controller's device, not a namespace's */
	/* page-aligned, so the kernel maps it for DMA without a bounce */
	if (posix_memalign(&buf, 4096, NVME_IDENTIFY_BYTES))
		return -ENOMEM;
	memset(buf, 0, NVME_IDENTIFY_BYTES);
	encode_identify_ns(&cmd, (uint32_t)nsid, buf);
	/* The kernel lets anyone who may open the device send Identify (nvme_cmd_allowed). */
	ret = ioctl(fd, NVME_IOCTL_ADMIN_CMD, &cmd);
	if (ret < 0)
		ret = -errno;
	else if (ret > 0)
		ret = -EIO;	/* the controller's NVMe status */
	else {
		memcpy(out, buf, NVME_IDENTIFY_BYTES);
		ret = nsid;
	}
	free(buf);
	return ret;
}

int lg_nvme_ring_probe(void)
{
	const unsigned want = IORING_SETUP_SQE128 | IORING_SETUP_CQE32;
	const unsigned entries = 8, rounds = 3;
	struct uring r;
	uint64_t expect = 0;
	int err = uring_init_flags(&r, entries, want);

	if (err)
		return err;
	if ((r.flags & want) != want)
		err = -EINVAL;
	/* Rounds of NOPs past the rings' wrap: each must come back with its own
	 * user_data, which holds only if both sides index 128- and 32-byte entries alike. */
	for (unsigned round = 0; !err && round < rounds; round++) {
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;

		for (unsigned i = 0; i < entries; i++) {
			struct io_uring_sqe *sqe = uring_get_sqe(&r);

			sqe->opcode = IORING_OP_NOP;
			sqe->user_data = round * entries + i;
		}
		err = uring_submit_and_wait(&r, entries, 0);
		if (err >= 0)
			err = err == (int)entries ? 0 : -EIO;
		uring_for_each_cqe(&r, head, cqe) {
			if (cqe->user_data != expect++ || cqe->res != 0)
				err = -EIO;
			seen++;
		}
		uring_cq_advance_to(&r, head);
		if (!err && seen != entries)
			err = -EIO;
	}
	uring_exit(&r);
	return err;
}

/* No feature bit says so: the kernel's release is the proof. A kernel with the
 * feature backported but an older number only loses registered buffers. */
int nvme_cmd_fixed_supported(void)
{
	struct utsname u;
	int major = 0, minor = 0;

	if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &major, &minor) != 2)
		return 0;
	return major > 6 || (major == 6 && minor >= 1);
}
