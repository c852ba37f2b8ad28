// SPDX-License-Identifier: GPL-2.0
/*
 * packmodel_guest: performs packmodel's driver-side trace ops on a real
 * kernel, on request from the guest agent, and reports what the model
 * reports — per area its vm_struct (page_order, nr_pages) and mappings, per
 * page its struct page words, per address the level and protection of its
 * mapping and of its direct-map alias (lookup_address()).
 *
 * Protocol (packmodel_guest.h): the agent write()s a struct pmg_req and its
 * payload to /dev/packmodel_guest; the op runs inside that write(); the next
 * read() returns a struct pmg_rsp and its payload.
 *
 * Symbols 6.1 does not export (find_vm_area, __vmalloc_node_range,
 * set_memory_ro/rw/x/nx, copy_to_kernel_nofault) are resolved at load time through
 * kallsyms_lookup_name(), whose address a kprobe gives (it is itself not
 * exported since v5.7). If one cannot be resolved, the module refuses to
 * load and says which.
 */
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/mutex.h>
#include <linux/kprobes.h>
#include <linux/list.h>
#include <asm/pgtable_types.h>

#include "packmodel_guest.h"

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("packmodel: driver-side trace ops on a real kernel");

#define PMG_SLOTS 4096

static void *(*p_vmalloc_node_range)(unsigned long size, unsigned long align,
				     unsigned long start, unsigned long end,
				     gfp_t gfp_mask, pgprot_t prot,
				     unsigned long vm_flags, int node,
				     const void *caller);
static struct vm_struct *(*p_find_vm_area)(const void *addr);
static int (*p_set_memory[PMG_SM_ROX])(unsigned long addr, int numpages);
static long (*p_copy_to_kernel_nofault)(void *dst, const void *src,
					size_t size);

static const char * const set_memory_names[PMG_SM_ROX] = {
	[PMG_SM_RO] = "set_memory_ro",
	[PMG_SM_RW] = "set_memory_rw",
	[PMG_SM_X] = "set_memory_x",
	[PMG_SM_NX] = "set_memory_nx",
};

static DEFINE_MUTEX(pmg_lock);
/* The trace's areas and pages, by the trace's own numbering. */
static void *areas[PMG_SLOTS];
static unsigned long freed[PMG_SLOTS];
static struct page *pages[PMG_SLOTS];
/* The driver-owned list that list_add() puts pages on. */
static LIST_HEAD(driver_list);

static struct pmg_rsp rsp;
static u8 payload[PMG_MAX_PAYLOAD];
static u8 buf[PMG_MAX_PAYLOAD];
static bool rsp_ready;

/* lookup_address() of @va as level | PMG_MAP_* bits; 0 if unmapped. */
static u64 map_info(unsigned long va)
{
	unsigned int level = 0;
	pte_t *pte = lookup_address(va, &level);
	u64 f;

	if (!pte || !(pte_flags(*pte) & _PAGE_PRESENT))
		return 0;
	f = pte_flags(*pte);
	return level | PMG_MAP_PRESENT | (f & _PAGE_RW ? PMG_MAP_RW : 0) |
	       (f & _PAGE_NX ? PMG_MAP_NX : 0);
}

/* The mapping of @va and of its page's direct-map alias. */
static void map_pair(unsigned long va, u64 *vmap, u64 *alias)
{
	struct page *pg = vmalloc_to_page((void *)va);

	*vmap = map_info(va);
	*alias = pg ? map_info((unsigned long)page_address(pg)) : 0;
}

static void page_info(struct page *pg, u64 *v)
{
	v[PMG_P_PFN] = page_to_pfn(pg);
	v[PMG_P_FLAGS] = pg->flags;
	v[PMG_P_REFCOUNT] = (u32)page_ref_count(pg);
	v[PMG_P_MAPCOUNT] = (u32)atomic_read(&pg->_mapcount);
	v[PMG_P_MAPPING] = (unsigned long)READ_ONCE(pg->mapping);
	v[PMG_P_INDEX] = pg->index;
	v[PMG_P_PRIVATE] = page_private(pg);
	v[PMG_P_COMPOUND] = PageTail(pg) ? PMG_PAGE_TAIL :
			    PageHead(pg) ? PMG_PAGE_HEAD : PMG_PAGE_SINGLE;
	v[PMG_P_PAGE_COUNT] = (u32)page_count(pg);
	v[PMG_P_ALIAS] = map_info((unsigned long)page_address(pg));
}

static long do_vmalloc(const struct pmg_req *q)
{
	unsigned long size = q->arg[0], align = q->arg[1], f = q->arg[2];
	gfp_t gfp = GFP_KERNEL;
	struct vm_struct *vm;
	void *p;

	if (areas[q->slot])
		return -EBUSY;
	if (f & PMG_F_ZERO)
		gfp |= __GFP_ZERO;
	if (f & PMG_F_NOFAIL)
		gfp |= __GFP_NOFAIL;
	if (f & PMG_F_KVMALLOC)
		/* kvmalloc_node()'s fallback once kmalloc has failed (mm/util.c) */
		p = p_vmalloc_node_range(size, 1, VMALLOC_START, VMALLOC_END,
					 gfp, PAGE_KERNEL, VM_ALLOW_HUGE_VMAP,
					 NUMA_NO_NODE,
					 __builtin_return_address(0));
	else if (align > 1)
		/* __vmalloc_node(size, align, ...) with the huge opt-in */
		p = p_vmalloc_node_range(size, align, VMALLOC_START,
					 VMALLOC_END, gfp, PAGE_KERNEL,
					 f & PMG_F_HUGE ? VM_ALLOW_HUGE_VMAP : 0,
					 NUMA_NO_NODE,
					 __builtin_return_address(0));
	else if (f & PMG_F_HUGE)
		p = vmalloc_huge(size, gfp);
	else
		p = __vmalloc(size, gfp);
	if (!p)
		return -ENOMEM;
	areas[q->slot] = p;
	vm = p_find_vm_area(p);
	rsp.val[PMG_A_ADDR] = (unsigned long)p;
	if (vm) {
		rsp.val[PMG_A_SIZE] = get_vm_area_size(vm);
		rsp.val[PMG_A_NR_PAGES] = vm->nr_pages;
		rsp.val[PMG_A_PAGE_ORDER] = vm->page_order;
	}
	map_pair((unsigned long)p, &rsp.val[PMG_A_VMAP], &rsp.val[PMG_A_ALIAS]);
	return 0;
}

/* Which page of [start, start + len) a faulting copy stopped at. */
static unsigned long first_bad(unsigned long start, size_t len, bool write)
{
	unsigned long a = start, end = start + len;
	u8 b;

	while (a < end) {
		if (copy_from_kernel_nofault(&b, (void *)a, 1))
			return a;
		if (write && !(map_info(a) & PMG_MAP_RW))
			return a;
		a = (a & PAGE_MASK) + PAGE_SIZE;
	}
	return end;
}

/* A fault's address and its page's mapping, for the agent's fault cause. */
static long fault(unsigned long start, size_t len, bool write)
{
	unsigned long a = first_bad(start, len, write);

	rsp.val[0] = a;
	rsp.val[1] = map_info(a);
	return -EFAULT;
}

static long do_read(unsigned long src, size_t len)
{
	unsigned long a;

	if (len > PMG_MAX_PAYLOAD)
		return -EINVAL;
	/*
	 * What the page tables say, not what a TLB may still hold: vfree()
	 * clears the PTEs at once but flushes the TLB lazily, so a stale
	 * pointer's load could still hit for a while, depending on timing.
	 */
	for (a = src & PAGE_MASK; a < src + len; a += PAGE_SIZE)
		if (!(map_info(a) & PMG_MAP_PRESENT))
			return fault(a, 1, false);
	if (copy_from_kernel_nofault(payload, (void *)src, len))
		return fault(src, len, false);
	rsp.len = len;
	return 0;
}

static long do_write(unsigned long dst, const u8 *data, size_t len)
{
	if (p_copy_to_kernel_nofault((void *)dst, data, len))
		return fault(dst, len, true);
	return 0;
}

static long do_memset(unsigned long dst, u8 value, size_t len)
{
	size_t done = 0;

	memset(buf, value, sizeof(buf));
	while (done < len) {
		size_t n = min(len - done, sizeof(buf));
		long r = do_write(dst + done, buf, n);

		if (r)
			return r;
		done += n;
		cond_resched();
	}
	return 0;
}

static long do_page_op(struct page *pg, u64 which, u64 value)
{
	switch (which) {
	case PMG_PG_READ:
		break;
	case PMG_PG_GET:
		get_page(pg);
		break;
	case PMG_PG_PUT:
		put_page(pg);
		break;
	case PMG_PG_SET_MAPPING:
		pg->mapping = (struct address_space *)value;
		break;
	case PMG_PG_SET_INDEX:
		pg->index = value;
		break;
	case PMG_PG_LIST_ADD:
		list_add(&pg->lru, &driver_list);
		break;
	case PMG_PG_LIST_DEL:
		list_del(&pg->lru);
		break;
	case PMG_PG_INIT_LIST_HEAD:
		INIT_LIST_HEAD(&pg->lru);
		break;
	case PMG_PG_SET_RESERVED:
		SetPageReserved(pg);
		break;
	case PMG_PG_CLEAR_RESERVED:
		ClearPageReserved(pg);
		break;
	case PMG_PG_SET_PRIVATE:
		set_page_private(pg, value);
		break;
	default:
		return -EINVAL;
	}
	page_info(pg, rsp.val);
	return 0;
}

/*
 * set_memory_rox() arrived in v6.2; before it, as its generic fallback in
 * include/linux/set_memory.h does, set_memory_ro() then set_memory_x().
 */
static long do_set_memory(unsigned long addr, int numpages, u64 which)
{
	int r;

	if (which > PMG_SM_ROX)
		return -EINVAL;
	if (which == PMG_SM_ROX) {
		r = p_set_memory[PMG_SM_RO](addr, numpages);
		if (!r)
			r = p_set_memory[PMG_SM_X](addr, numpages);
	} else {
		r = p_set_memory[which](addr, numpages);
	}
	map_pair(addr, &rsp.val[PMG_M_VMAP], &rsp.val[PMG_M_ALIAS]);
	return r;
}

/*
 * How many 2 MiB physical blocks the pages of the vm area at @addr lie in:
 * the direct-map leaves a CPA on the area's aliases can split.
 */
static long do_span(unsigned long addr)
{
	struct vm_struct *vm = p_find_vm_area((void *)addr);
	unsigned long n = 0, i, j, b;

	if (!vm || !vm->pages)
		return -ENOENT;
	for (i = 0; i < vm->nr_pages; i++) {
		b = page_to_pfn(vm->pages[i]) >> (PMD_SHIFT - PAGE_SHIFT);
		for (j = 0; j < i; j++)
			if (page_to_pfn(vm->pages[j]) >> (PMD_SHIFT - PAGE_SHIFT) == b)
				break;
		if (j == i)
			n++;
	}
	rsp.val[0] = vm->nr_pages;
	rsp.val[1] = n;
	return 0;
}

static long run(const struct pmg_req *q, const u8 *data)
{
	unsigned long a = q->slot < PMG_SLOTS ? (unsigned long)areas[q->slot] : 0;
	struct vm_struct *vm;
	struct page *pg;

	if (q->slot >= PMG_SLOTS)
		return -E2BIG;
	switch (q->cmd) {
	case PMG_VMALLOC:
		return do_vmalloc(q);
	case PMG_STALE_READ:
		if (!freed[q->slot])
			return -ENOENT;
		return do_read(freed[q->slot] + q->arg[0], q->len);
	case PMG_PAGE_OP:
		if (!pages[q->slot])
			return -ENOENT;
		return do_page_op(pages[q->slot], q->arg[0], q->arg[1]);
	case PMG_SPAN:
		return do_span(q->arg[0]);
	case PMG_PEEK:
		/* A BPF image or a pack, by address: what a jump there would meet. */
		if (q->arg[0] < MODULES_VADDR || q->arg[0] + q->len > MODULES_END)
			return -EINVAL;
		map_pair(q->arg[0], &rsp.val[PMG_M_VMAP], &rsp.val[PMG_M_ALIAS]);
		vm = p_find_vm_area((void *)q->arg[0]);
		rsp.val[PMG_M_AREA] = vm ? (unsigned long)vm->addr : 0;
		return do_read(q->arg[0], q->len);
	}
	if (!a)
		return -ENOENT;
	switch (q->cmd) {
	case PMG_VFREE:
		vfree((void *)a);
		areas[q->slot] = NULL;
		freed[q->slot] = a;
		return 0;
	case PMG_VREAD:
		return do_read(a + q->arg[0], q->len);
	case PMG_VWRITE:
		return do_write(a + q->arg[0], data, q->len);
	case PMG_VMEMSET:
		return do_memset(a + q->arg[0], q->arg[1], q->len);
	case PMG_VMALLOC_TO_PAGE:
		if (q->arg[1] >= PMG_SLOTS)
			return -E2BIG;
		pg = vmalloc_to_page((void *)(a + q->arg[0]));
		pages[q->arg[1]] = pg;
		if (!pg)
			return -ENXIO;
		page_info(pg, rsp.val);
		rsp.val[PMG_P_VMAP] = map_info(a + q->arg[0]);
		return 0;
	case PMG_SET_MEMORY:
		return do_set_memory(a + q->arg[0], q->arg[1], q->arg[2]);
	case PMG_MAP_INFO:
		map_pair(a + q->arg[0], &rsp.val[PMG_M_VMAP],
			 &rsp.val[PMG_M_ALIAS]);
		return 0;
	}
	return -EINVAL;
}

static ssize_t pmg_write(struct file *file, const char __user *ubuf,
			 size_t count, loff_t *ppos)
{
	struct pmg_req q;

	if (count < sizeof(q) || count > sizeof(q) + PMG_MAX_PAYLOAD)
		return -EINVAL;
	if (copy_from_user(&q, ubuf, sizeof(q)))
		return -EFAULT;
	if (q.cmd == PMG_VWRITE && q.len != count - sizeof(q))
		return -EINVAL;
	if (q.cmd != PMG_VWRITE && count != sizeof(q))
		return -EINVAL;
	mutex_lock(&pmg_lock);
	if (copy_from_user(buf, ubuf + sizeof(q), count - sizeof(q))) {
		mutex_unlock(&pmg_lock);
		return -EFAULT;
	}
	memset(&rsp, 0, sizeof(rsp));
	rsp.ret = run(&q, buf);
	rsp_ready = true;
	mutex_unlock(&pmg_lock);
	return count;
}

static ssize_t pmg_read(struct file *file, char __user *ubuf, size_t count,
			loff_t *ppos)
{
	ssize_t n;

	mutex_lock(&pmg_lock);
	n = sizeof(rsp) + rsp.len;
	if (!rsp_ready)
		n = -ENODATA;
	else if (count < n)
		n = -EINVAL;
	else if (copy_to_user(ubuf, &rsp, sizeof(rsp)) ||
		 copy_to_user(ubuf + sizeof(rsp), payload, rsp.len))
		n = -EFAULT;
	else
		rsp_ready = false;
	mutex_unlock(&pmg_lock);
	return n;
}

static const struct file_operations pmg_fops = {
	.owner = THIS_MODULE,
	.write = pmg_write,
	.read = pmg_read,
};

static struct miscdevice pmg_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "packmodel_guest",
	.fops = &pmg_fops,
};

typedef unsigned long (*kallsyms_lookup_name_t)(const char *name);

static int __init pmg_init(void)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	kallsyms_lookup_name_t lookup;
	int i, r;

	r = register_kprobe(&kp);
	if (r) {
		pr_err("packmodel_guest: no kprobe on kallsyms_lookup_name (%d)\n",
		       r);
		return r;
	}
	lookup = (kallsyms_lookup_name_t)kp.addr;
	unregister_kprobe(&kp);

#define RESOLVE(ptr, name)						\
	do {								\
		ptr = (void *)lookup(name);				\
		if (!ptr) {						\
			pr_err("packmodel_guest: cannot resolve %s\n", name); \
			return -ENOENT;					\
		}							\
	} while (0)
	RESOLVE(p_vmalloc_node_range, "__vmalloc_node_range");
	RESOLVE(p_find_vm_area, "find_vm_area");
	RESOLVE(p_copy_to_kernel_nofault, "copy_to_kernel_nofault");
	for (i = 0; i < PMG_SM_ROX; i++)
		RESOLVE(p_set_memory[i], set_memory_names[i]);
#undef RESOLVE
	return misc_register(&pmg_dev);
}

static void __exit pmg_exit(void)
{
	misc_deregister(&pmg_dev);
}

module_init(pmg_init);
module_exit(pmg_exit);
