/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The request and response packmodel's guest agent exchanges with
 * /dev/packmodel_guest: one write() of a request (and its payload), then one
 * read() of the response (and its payload). Little-endian, no padding.
 * linux/agent/src/module.rs is the agent's copy of this layout.
 */
#ifndef PACKMODEL_GUEST_H
#define PACKMODEL_GUEST_H

#include <linux/types.h>

enum pmg_cmd {
	PMG_VMALLOC = 1,	/* slot=area, arg0=size, arg1=align, arg2=PMG_F_* */
	PMG_VFREE,		/* slot=area */
	PMG_VREAD,		/* slot=area, arg0=off, len */
	PMG_VWRITE,		/* slot=area, arg0=off, payload */
	PMG_VMEMSET,		/* slot=area, arg0=off, arg1=value, len */
	PMG_STALE_READ,		/* slot=area (freed), arg0=off, len */
	PMG_VMALLOC_TO_PAGE,	/* slot=area, arg0=off, arg1=page slot */
	PMG_PAGE_OP,		/* slot=page, arg0=PMG_PG_*, arg1=value */
	PMG_SET_MEMORY,		/* slot=area, arg0=off, arg1=pages, arg2=PMG_SM_* */
	PMG_MAP_INFO,		/* slot=area, arg0=off */
	PMG_PEEK,		/* arg0=kernel address, len: bytes and mapping */
	PMG_SPAN,		/* arg0=vm area address: val[0] pages, val[1] 2 MiB frames */
};

/* PMG_VMALLOC flags */
#define PMG_F_HUGE	0x1	/* VM_ALLOW_HUGE_VMAP (vmalloc_huge) */
#define PMG_F_ZERO	0x2	/* __GFP_ZERO (vzalloc) */
#define PMG_F_NOFAIL	0x4	/* __GFP_NOFAIL */
#define PMG_F_KVMALLOC	0x8	/* kvmalloc()'s vmalloc fallback */

enum pmg_page_op {
	PMG_PG_READ,
	PMG_PG_GET,
	PMG_PG_PUT,
	PMG_PG_SET_MAPPING,
	PMG_PG_SET_INDEX,
	PMG_PG_LIST_ADD,
	PMG_PG_LIST_DEL,
	PMG_PG_INIT_LIST_HEAD,
	PMG_PG_SET_RESERVED,
	PMG_PG_CLEAR_RESERVED,
	PMG_PG_SET_PRIVATE,
};

enum pmg_set_memory { PMG_SM_RO, PMG_SM_RW, PMG_SM_X, PMG_SM_NX, PMG_SM_ROX };

/* A mapping as lookup_address() sees it: level | PMG_MAP_* bits */
#define PMG_MAP_PRESENT	0x100
#define PMG_MAP_RW	0x200
#define PMG_MAP_NX	0x400

/* val[] of an area (PMG_VMALLOC) */
enum { PMG_A_ADDR, PMG_A_SIZE, PMG_A_NR_PAGES, PMG_A_PAGE_ORDER,
	PMG_A_VMAP, PMG_A_ALIAS, PMG_A_NR };
/* val[] of a page (PMG_VMALLOC_TO_PAGE, PMG_PAGE_OP) */
enum { PMG_P_PFN, PMG_P_FLAGS, PMG_P_REFCOUNT, PMG_P_MAPCOUNT, PMG_P_MAPPING,
	PMG_P_INDEX, PMG_P_PRIVATE, PMG_P_COMPOUND, PMG_P_PAGE_COUNT,
	PMG_P_VMAP, PMG_P_ALIAS, PMG_P_NR };
/*
 * val[] of PMG_SET_MEMORY, PMG_MAP_INFO and PMG_PEEK (vmap: the address; for
 * PMG_PEEK also the start of the vm area holding it: a pack, or an oversize
 * program's own module_alloc area)
 */
enum { PMG_M_VMAP, PMG_M_ALIAS, PMG_M_AREA, PMG_M_NR };

/* compound state (val[PMG_P_COMPOUND]) */
enum { PMG_PAGE_SINGLE, PMG_PAGE_HEAD, PMG_PAGE_TAIL };

#define PMG_NR_VAL	16
#define PMG_MAX_PAYLOAD	4096

struct pmg_req {
	__u32 cmd;
	__u32 slot;
	__u64 arg[3];
	__u64 len;	/* payload bytes after the request, or bytes wanted */
};

struct pmg_rsp {
	__s64 ret;	/* 0 or -errno */
	__u64 val[PMG_NR_VAL];
	__u64 len;	/* payload bytes after the response */
};

#endif
