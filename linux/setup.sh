#!/usr/bin/env bash
# Sets up packmodel's ground-truth guest (DESIGN §11) in one command.
#
#   linux/setup.sh                 Debian's pinned 6.1 kernel (the default)
#   linux/setup.sh --tree DIR      your own kernel: DIR is its build tree
#                                  (vmlinux and what `make M=` needs)
#
# The default run, on a fresh Debian 12 machine as root: installs QEMU, the
# pinned kernel's headers and the initramfs tools with apt; downloads the
# pinned kernel image package without installing it and extracts its
# uncompressed vmlinux; builds the packmodel_guest module (W=1), the agent,
# its bpf(2) helper and the packmodel CLI; and packs the initramfs. Everything lands in
# linux/build/<name>/ (vmlinux, initramfs.cpio.gz), which
# `packmodel replay --on linux[=DIR/vmlinux]` boots.
#
# Environment: KV (the pinned ABI, default below), SKIP_APT=1 (tools already
# there), CARGO_PROFILE (release, the default, or dev).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

# The pinned kernel: Debian 12's linux-image-6.1.0-57-amd64 (6.1.192-3),
# the one ../shared/reference/real-kernel.md measured.
KV=${KV:-6.1.0-57-amd64}
tree=
while [ $# -gt 0 ]; do
	case $1 in
	--tree) tree=$(cd "$2" && pwd); shift 2 ;;
	-h|--help) sed -n '2,18p' "$0"; exit 0 ;;
	*) echo "setup.sh: unknown argument $1 (expected --tree DIR)" >&2; exit 2 ;;
	esac
done

step_start=$SECONDS
step() {
	echo "setup: $* ($((SECONDS - step_start)) s so far)"
}

if [ -z "${SKIP_APT:-}" ]; then
	step "apt: qemu-system-x86, busybox-static, cpio${tree:+} ${tree:-and linux-headers-$KV}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	pkgs="qemu-system-x86 busybox-static cpio xz-utils kmod gcc make libc6-dev"
	[ -n "$tree" ] || pkgs="$pkgs linux-headers-$KV"
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi

if [ -n "$tree" ]; then
	name=custom
	out=$top/linux/build/$name
	mkdir -p "$out"
	[ -f "$tree/vmlinux" ] || { echo "setup.sh: $tree/vmlinux does not exist" >&2; exit 2; }
	cp "$tree/vmlinux" "$out/vmlinux"
	kdir=$tree
else
	name=debian-$KV
	out=$top/linux/build/$name
	mkdir -p "$out"
	if [ ! -f "$out/vmlinux" ]; then
		step "the kernel image package linux-image-$KV (downloaded, not installed)"
		dl=$(mktemp -d)
		chmod 755 "$dl" # apt downloads as _apt
		(cd "$dl" && apt-get download -qq "linux-image-$KV")
		dpkg-deb --fsys-tarfile "$dl"/linux-image-"${KV}"_*.deb |
			tar -x -C "$dl" "./boot/vmlinuz-$KV"
		# The uncompressed ELF inside the XZ bzImage (the method of the
		# kernel's scripts/extract-vmlinux): it boots ~6 s faster under TCG.
		bz=$dl/boot/vmlinuz-$KV
		found=
		for pos in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bz" | cut -d: -f1); do
			tail -c +$((pos + 1)) "$bz" | xz -dc 2>/dev/null >"$dl/vmlinux" || true
			if [ "$(head -c4 "$dl/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ]; then
				found=1
				break
			fi
		done
		[ -n "$found" ] || { echo "setup.sh: no ELF vmlinux inside $bz" >&2; exit 1; }
		mv "$dl/vmlinux" "$out/vmlinux"
		rm -rf "$dl"
	fi
	kdir=/lib/modules/$KV/build
fi

step "the packmodel_guest module against $kdir (W=1)"
mod=$out/module
rm -rf "$mod"
mkdir -p "$mod"
cp "$here/module/packmodel_guest.c" "$here/module/packmodel_guest.h" "$here/module/Makefile" "$mod/"
# The module needs no BTF; without pahole a tree with a vmlinux would fail
# to generate it, so it is skipped.
nobtf=
command -v pahole >/dev/null 2>&1 || nobtf=CONFIG_DEBUG_INFO_BTF_MODULES=
make -s -C "$mod" KDIR="$kdir" $nobtf 2>&1 | grep -v "Skipping BTF generation" || true
[ -f "$mod/packmodel_guest.ko" ] || { echo "setup.sh: the module did not build" >&2; exit 1; }

profile=${CARGO_PROFILE:-release}
step "the agent and the packmodel CLI (cargo, profile $profile)"
(cd "$top" && cargo build --quiet --profile "$profile" -p packmodel-agent -p packmodel --bins)
dir=$profile
[ "$profile" = dev ] && dir=debug
agent=$top/target/$dir/packmodel-agent

step "the initramfs"
root=$out/rootfs
rm -rf "$root"
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/traces"
cp /bin/busybox "$root/bin/busybox"
for a in $("$root/bin/busybox" --list); do
	[ "$a" = busybox ] || ln -s busybox "$root/bin/$a"
done
cp "$here/init" "$root/init"
chmod +x "$root/init"
cp "$mod/packmodel_guest.ko" "$root/"
gcc -O2 -static -Wall -Wextra -Werror -o "$root/bpf_prog" "$here/helper/bpf_prog.c"
cp "$agent" "$root/packmodel-agent"
strip "$root/packmodel-agent" 2>/dev/null || true
# The agent is a glibc binary: its shared libraries come along.
for lib in $(ldd "$agent" | grep -oE '/[^ ]+'); do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1 >"$out/initramfs.cpio.gz")
rm -rf "$root"
step "done: $out/vmlinux and $out/initramfs.cpio.gz"
echo "  run: target/$dir/packmodel replay --on linux${tree:+=$out/vmlinux} corpus/examples/vmalloc.trace"
