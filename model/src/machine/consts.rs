//! Sizes and the x86-64 kernel address-space layout (4-level paging, KASLR on).
//!
//! Only the ranges the model touches are named: the direct map, the vmalloc and
//! module ranges, the `struct page` array (vmemmap) and the driver's static data.

/// `PAGE_SHIFT` / `PAGE_SIZE` (4 KiB).
pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// `PMD_SHIFT` / `PMD_SIZE` (2 MiB): one PMD leaf maps `PTRS_PER_PTE` pages.
pub const PMD_SHIFT: u32 = 21;
pub const PMD_SIZE: u64 = 1 << PMD_SHIFT;
/// `PUD_SHIFT` / `PUD_SIZE` (1 GiB).
pub const PUD_SHIFT: u32 = 30;
pub const PUD_SIZE: u64 = 1 << PUD_SHIFT;
/// Entries in one page-table page.
pub const PTRS_PER_PTE: u64 = 512;
/// Pages under one PMD leaf.
pub const PAGES_PER_PMD: u64 = PMD_SIZE / PAGE_SIZE;
/// `MAX_ORDER` in v5.18: buddy orders are `0..MAX_ORDER`, i.e. 0..=10.
pub const MAX_ORDER: u32 = 11;
/// The order of a PMD-sized block.
pub const PMD_ORDER: u32 = PMD_SHIFT - PAGE_SHIFT;

/// `PAGE_OFFSET`: start of the direct map of all physical memory.
pub const PAGE_OFFSET: u64 = 0xffff_8880_0000_0000;
/// `VMALLOC_START` .. `VMALLOC_END` (32 TiB).
pub const VMALLOC_START: u64 = 0xffff_c900_0000_0000;
pub const VMALLOC_END: u64 = 0xffff_e8ff_ffff_ffff;
/// `VMEMMAP_START`: the `struct page` array; `page_to_pfn` is `(page - VMEMMAP_START) / 64`.
pub const VMEMMAP_START: u64 = 0xffff_ea00_0000_0000;
/// `MODULES_VADDR` .. `MODULES_END` with a 1 GiB `KERNEL_IMAGE_SIZE` (KASLR).
pub const MODULES_VADDR: u64 = 0xffff_ffff_c000_0000;
pub const MODULES_END: u64 = 0xffff_ffff_ff00_0000;
/// Static kernel data that the model gives addresses to: the driver's `LIST_HEAD`
/// lives here (a driver's `.data` is in the kernel image range).
pub const KDATA_START: u64 = 0xffff_ffff_82a0_0000;

/// `sizeof(struct page)` on x86-64 with `CONFIG_MEMCG`.
pub const STRUCT_PAGE_SIZE: u64 = 64;

/// Rounds `x` up to a multiple of `to` (a power of two).
pub const fn round_up(x: u64, to: u64) -> u64 {
    (x + to - 1) & !(to - 1)
}

/// `PAGE_ALIGN`.
pub const fn page_align(x: u64) -> u64 {
    round_up(x, PAGE_SIZE)
}

/// Is `addr` a canonical x86-64 address (bits 63..47 all equal)?
pub const fn is_canonical(addr: u64) -> bool {
    let top = addr >> 47;
    top == 0 || top == 0x1_ffff
}

/// `__va(pfn << PAGE_SHIFT)`.
pub const fn pfn_to_virt(pfn: u64) -> u64 {
    PAGE_OFFSET + (pfn << PAGE_SHIFT)
}
