/*
 * nvme.h: NVMe passthrough commands on an NVMe namespace's generic char device
 * (/dev/ngXnY), submitted as IORING_OP_URING_CMD on a ring with 128-byte SQEs
 * and 32-byte CQEs (Linux >= 5.19).
 *
 * The command: struct nvme_uring_cmd of <linux/nvme_ioctl.h>, 72 bytes that
 * sit in the SQE's cmd area (80 bytes from offset 48 of a 128-byte SQE). The
 * kernel copies opcode, nsid, cdw2/3 and cdw10..15 into the NVMe submission
 * queue entry, builds the data pointer from addr/data_len itself, and rejects
 * any flags. Its layout, by byte offset:
 *     0 opcode u8 | 1 flags u8 | 2 rsvd1 u16 | 4 nsid u32 | 8 cdw2 | 12 cdw3 |
 *    16 metadata u64 | 24 addr u64 | 32 metadata_len u32 | 36 data_len u32 |
 *    40 cdw10 | 44 cdw11 | 48 cdw12 | 52 cdw13 | 56 cdw14 | 60 cdw15 |
 *    64 timeout_ms u32 | 68 rsvd2 u32
 *
 * Read and Write, as the NVM Command Set specification defines them (its
 * "Read command" and "Write command" sections; the opcodes are in its table
 * of opcodes for the NVM command set):
 *     opcode  02h Read, 01h Write
 *     CDW10   Starting LBA (SLBA), bits 31:00
 *     CDW11   SLBA bits 63:32
 *     CDW12   bits 15:00 Number of Logical Blocks (NLB), a 0's based value
 *             (0 means one block, so one command moves at most 65536);
 *             bit 30 FUA, bit 31 Limited Retry, PRINFO and the rest: all 0 here
 *     CDW13   dataset management hints: 0;  CDW14/15 protection info tags: 0
 * The LBA size comes from Identify Namespace (admin opcode 06h, CNS 00h in
 * CDW10): FLBAS (byte 26) picks the namespace's format out of the LBA Format
 * table at byte 128, whose LBADS field is log2 of the LBA size in bytes
 * (loadgen/disk/nvme.py reads it).
 */
#ifndef LG_NVME_H
#define LG_NVME_H

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/io_uring.h>
#include <linux/ioctl.h>

#if defined(__has_include) && __has_include(<linux/nvme_ioctl.h>)
#include <linux/nvme_ioctl.h>
#endif

/* Headers older than Linux 5.19 lack the io_uring command: the uapi layout, as above. */
#ifndef NVME_URING_CMD_IO
struct nvme_uring_cmd {
	uint8_t opcode;
	uint8_t flags;
	uint16_t rsvd1;
	uint32_t nsid;
	uint32_t cdw2;
	uint32_t cdw3;
	uint64_t metadata;
	uint64_t addr;
	uint32_t metadata_len;
	uint32_t data_len;
	uint32_t cdw10;
	uint32_t cdw11;
	uint32_t cdw12;
	uint32_t cdw13;
	uint32_t cdw14;
	uint32_t cdw15;
	uint32_t timeout_ms;
	uint32_t rsvd2;
};
#define NVME_URING_CMD_IO _IOWR('N', 0x80, struct nvme_uring_cmd)
#endif

/* The admin command of the ioctl (struct nvme_passthru_cmd): 72 bytes too, result last. */
#ifndef NVME_IOCTL_ADMIN_CMD
struct nvme_passthru_cmd {
	uint8_t opcode;
	uint8_t flags;
	uint16_t rsvd1;
	uint32_t nsid;
	uint32_t cdw2;
	uint32_t cdw3;
	uint64_t metadata;
	uint64_t addr;
	uint32_t metadata_len;
	uint32_t data_len;
	uint32_t cdw10;
	uint32_t cdw11;
	uint32_t cdw12;
	uint32_t cdw13;
	uint32_t cdw14;
	uint32_t cdw15;
	uint32_t timeout_ms;
	uint32_t result;
};
#define NVME_IOCTL_ID _IO('N', 0x40)
#define NVME_IOCTL_ADMIN_CMD _IOWR('N', 0x41, struct nvme_passthru_cmd)
#endif

/* The uapi layout, checked: a header that differed would send garbled commands. */
static_assert(sizeof(struct nvme_uring_cmd) == 72, "nvme_uring_cmd is 72 bytes");
static_assert(offsetof(struct nvme_uring_cmd, nsid) == 4, "nsid at 4");
static_assert(offsetof(struct nvme_uring_cmd, addr) == 24, "addr at 24");
static_assert(offsetof(struct nvme_uring_cmd, data_len) == 36, "data_len at 36");
static_assert(offsetof(struct nvme_uring_cmd, cdw10) == 40, "cdw10 at 40");
static_assert(offsetof(struct nvme_uring_cmd, cdw12) == 48, "cdw12 at 48");
static_assert(offsetof(struct nvme_uring_cmd, timeout_ms) == 64, "timeout_ms at 64");
static_assert(sizeof(struct nvme_passthru_cmd) == 72, "nvme_passthru_cmd is 72 bytes");
static_assert(offsetof(struct nvme_passthru_cmd, cdw10) == 40, "cdw10 at 40");
/* The command lives in the SQE's cmd area: 16 bytes of the first 64-byte half, all of the second. */
static_assert(offsetof(struct io_uring_sqe, cmd) == 48, "sqe->cmd at 48");
static_assert(sizeof(struct nvme_uring_cmd) <= 2 * sizeof(struct io_uring_sqe) - 48, "fits SQE128's cmd");

#define NVME_OPC_WRITE 0x01		/* NVM command set */
#define NVME_OPC_READ 0x02
#define NVME_ADMIN_OPC_IDENTIFY 0x06	/* admin command set */
#define NVME_CNS_NAMESPACE 0x00		/* Identify: the namespace data structure */
#define NVME_IDENTIFY_BYTES 4096
#define NVME_MAX_NLB 65536		/* NLB is 16 bits, 0's based */
#define NVME_MIN_LBA_SHIFT 9		/* LBADS below 9 is "not supported" */
#define NVME_MAX_LBA_SHIFT 30

/* The read or write of nlb (>= 1) LBAs from slba into cmd; nothing is checked here. */
static inline void nvme_encode_rw(struct nvme_uring_cmd *cmd, int is_write, uint32_t nsid, uint64_t slba,
				  uint32_t nlb, uint64_t addr, uint32_t data_len)
{
	*cmd = (struct nvme_uring_cmd){
		.opcode = is_write ? NVME_OPC_WRITE : NVME_OPC_READ,
		.nsid = nsid,
		.addr = addr,
		.data_len = data_len,
		.cdw10 = (uint32_t)slba,
		.cdw11 = (uint32_t)(slba >> 32),
		.cdw12 = (nlb - 1) & 0xffff,	/* 0's based */
	};
}

/*
 * Prepare sqe (of a ring set up with IORING_SETUP_SQE128, zeroed by
 * uring_get_sqe) as the passthrough read or write of len bytes at off of the
 * namespace nsid with LBAs of 1 << lba_shift bytes, moving data at buf.
 * buf_index >= 0: buf lies in that registered buffer (IORING_URING_CMD_FIXED).
 * The caller sets user_data.
 */
static inline void nvme_prep_rw(struct io_uring_sqe *sqe, int fd, int fixed_file, int buf_index, int is_write,
				uint32_t nsid, unsigned lba_shift, uint64_t off, uint32_t len, const void *buf)
{
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->flags = fixed_file ? IOSQE_FIXED_FILE : 0;
	sqe->fd = fd;
	sqe->cmd_op = NVME_URING_CMD_IO;
	if (buf_index >= 0) {
		sqe->uring_cmd_flags = IORING_URING_CMD_FIXED;
		sqe->buf_index = (uint16_t)buf_index;
	}
	nvme_encode_rw((struct nvme_uring_cmd *)sqe->cmd, is_write, nsid, off >> lba_shift, len >> lba_shift,
		       (uint64_t)(uintptr_t)buf, len);
}

/*
 * A passthrough CQE as the disk worker counts it: len bytes, or -errno. The
 * kernel puts -errno in res when it could not issue the command, and the NVMe
 * status (status code type and status code, > 0) when the device failed it;
 * that is counted as EIO, as the block layer reports most of them. The second
 * half of the 32-byte CQE (big_cqe[0]) holds the completion's Dword 0, which
 * Read and Write leave command-specific and unused, so it is not looked at.
 */
static inline int nvme_cqe_res(const struct io_uring_cqe *cqe, uint32_t len)
{
	if (cqe->res == 0)
		return (int)len;
	return cqe->res < 0 ? cqe->res : -EIO;
}

/* Whether a passthrough command may name a registered buffer (IORING_URING_CMD_FIXED, Linux >= 6.1). */
int nvme_cmd_fixed_supported(void);

#endif
