// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_prog: the guest agent's BPF side. It loads socket-filter programs
 * through bpf(2) and holds their file descriptors, so that the agent (safe
 * Rust, no raw syscalls) can load, inspect and free programs by asking it.
 *
 * One command per line on stdin, one answer per line on stdout:
 *
 *   load LEN     a program whose x86-64 JIT image is LEN bytes, or as close
 *                as instruction sizes allow:
 *                "ok FD JITED_LEN ADDR" (ADDR: the image, from jited_ksyms),
 *                or "err ERRNO"
 *   image FD P   write the JIT image (jited_prog_insns) to the file P: "ok"
 *   close FD     unload: "ok"
 *   all          every program loaded in the system (the boot's own too):
 *                "prog ADDR JITED_LEN" lines, then "end"
 *
 * The image length is the JIT's prologue and epilogue (measured once at
 * start: BASE, the image of "r0 = 0; exit") plus the body: 4-byte
 * "r0 += 1" (add rax, imm8) instructions and one 3-, 5- or 6-byte one
 * ("w0 += 1", "w0 += 1000", "r0 += 1000") for the remainder.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <linux/bpf.h>

#define INSN(c, d, o, i) \
	((struct bpf_insn){ .code = (c), .dst_reg = (d), .off = (o), .imm = (i) })
#define MOV64_IMM0	INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0)
#define ADD64_IMM(i)	INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_0, 0, (i))
#define ADD32_IMM(i)	INSN(BPF_ALU | BPF_ADD | BPF_K, BPF_REG_0, 0, (i))
#define EXIT		INSN(BPF_JMP | BPF_EXIT, 0, 0, 0)

static long sys_bpf(int cmd, union bpf_attr *attr)
{
	return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

static int info(int fd, struct bpf_prog_info *pi, uint64_t *addr, void *insns, uint32_t len)
{
	union bpf_attr attr;

	memset(pi, 0, sizeof(*pi));
	pi->nr_jited_ksyms = 1;
	pi->jited_ksyms = (uint64_t)(uintptr_t)addr;
	pi->jited_prog_len = len;
	pi->jited_prog_insns = (uint64_t)(uintptr_t)insns;
	memset(&attr, 0, sizeof(attr));
	attr.info.bpf_fd = fd;
	attr.info.info_len = sizeof(*pi);
	attr.info.info = (uint64_t)(uintptr_t)pi;
	return sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr);
}

/* Loads "r0 = 0; <body>; exit" with @n4 4-byte adds and one @fix-byte one. */
static int load(long n4, int fix)
{
	size_t n = 2 + n4 + (fix ? 1 : 0), i = 0;
	struct bpf_insn *p = calloc(n, sizeof(*p));
	union bpf_attr attr;
	int fd;

	if (!p)
		return -ENOMEM;
	p[i++] = MOV64_IMM0;
	if (fix == 3)
		p[i++] = ADD32_IMM(1);
	else if (fix == 5)
		p[i++] = ADD32_IMM(1000);
	else if (fix == 6)
		p[i++] = ADD64_IMM(1000);
	while (n4-- > 0)
		p[i++] = ADD64_IMM(1);
	p[i++] = EXIT;
	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (uint64_t)(uintptr_t)p;
	attr.insn_cnt = n;
	attr.license = (uint64_t)(uintptr_t)"GPL";
	fd = sys_bpf(BPF_PROG_LOAD, &attr);
	free(p);
	return fd < 0 ? -errno : fd;
}

int main(void)
{
	struct bpf_prog_info pi;
	char line[256], path[200];
	uint32_t base;
	uint64_t addr;
	long len;
	int fd;

	struct rlimit nofile;

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* One descriptor per live program: thousands in frag --on linux. */
	if (!getrlimit(RLIMIT_NOFILE, &nofile)) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	fd = load(0, 0);
	if (fd < 0 || info(fd, &pi, &addr, NULL, 0)) {
		printf("err %d calibration\n", fd < 0 ? -fd : errno);
		return 1;
	}
	base = pi.jited_prog_len;
	close(fd);
	printf("ready %u\n", base);
	while (fgets(line, sizeof(line), stdin)) {
		if (sscanf(line, "load %ld", &len) == 1) {
			long body = len - (long)base;
			int fix = 0;

			switch (body > 0 ? body % 4 : 0) {
			case 1: fix = 5; break;
			case 2: fix = 6; break;
			case 3: fix = 3; break;
			}
			if (body < fix)
				fix = 0;
			fd = load(body > fix ? (body - fix) / 4 : 0, fix);
			if (fd < 0) {
				printf("err %d\n", -fd);
			} else if (info(fd, &pi, &addr, NULL, 0)) {
				printf("err %d info\n", errno);
				close(fd);
			} else {
				printf("ok %d %u %llx\n", fd, pi.jited_prog_len,
				       (unsigned long long)addr);
			}
		} else if (sscanf(line, "image %d %199s", &fd, path) == 2) {
			uint8_t *buf;
			FILE *f;

			if (info(fd, &pi, &addr, NULL, 0)) {
				printf("err %d\n", errno);
				continue;
			}
			buf = malloc(pi.jited_prog_len ? pi.jited_prog_len : 1);
			if (!buf || info(fd, &pi, &addr, buf, pi.jited_prog_len)) {
				printf("err %d\n", buf ? errno : ENOMEM);
				free(buf);
				continue;
			}
			f = fopen(path, "wb");
			if (!f || fwrite(buf, 1, pi.jited_prog_len, f) != pi.jited_prog_len)
				printf("err %d\n", errno);
			else
				printf("ok\n");
			if (f)
				fclose(f);
			free(buf);
		} else if (strncmp(line, "all", 3) == 0) {
			union bpf_attr attr;
			uint32_t id = 0;

			for (;;) {
				memset(&attr, 0, sizeof(attr));
				attr.start_id = id;
				if (sys_bpf(BPF_PROG_GET_NEXT_ID, &attr))
					break;
				id = attr.next_id;
				memset(&attr, 0, sizeof(attr));
				attr.prog_id = id;
				fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
				if (fd < 0)
					continue;
				addr = 0;
				if (!info(fd, &pi, &addr, NULL, 0) && addr)
					printf("prog %llx %u\n", (unsigned long long)addr,
					       pi.jited_prog_len);
				close(fd);
			}
			printf("end\n");
		} else if (sscanf(line, "close %d", &fd) == 1) {
			printf(close(fd) ? "err %d\n" : "ok\n", errno);
		} else {
			printf("err %d unknown command\n", EINVAL);
		}
	}
	return 0;
}
