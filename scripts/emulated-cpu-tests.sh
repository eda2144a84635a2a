#!/usr/bin/env bash
# Runs the distill crate's unit tests on emulated CPUs: the Bochs emulator's models of
# Intel CPUs with AVX-512 VNNI and AVX-VNNI (`sapphire_rapids`) or AVX-VNNI alone (`arrow_lake`),
# so the kernels chosen at run time for those instruction sets run somewhere before a user's CPU.
# For machines without those instruction sets. Under a minute for the quantized tests, about an
# hour for every test; never part of CI: QEMU's TCG (11.1) emulates neither AVX-512 nor AVX-VNNI,
# and no package registry ships a Bochs build that runs a kernel (see BOCHS below).
#
#   BOCHS=/path/to/bochs KERNEL=/path/to/vmlinuz scripts/emulated-cpu-tests.sh [MODEL] [FILTER...]
#
# MODEL: a Bochs CPU model (default sapphire_rapids). FILTER: test name filters, as `cargo test`
# takes them (default: the quantized products; `all` runs every test).
#
# BOCHS: Bochs 3.0 or newer built with `--enable-x86-64 --enable-avx --enable-evex
# --with-nogui` (its BIOS files found through BXSHARE, or beside it in `bios/`). Debian's
# bochs 3.1+dfsg-1 binary, built with GCC 16, miscomputes the kernel's first divisions; one built
# from the same source with GCC 12 boots. KERNEL: an x86-64 Linux kernel with its serial console
# and initramfs built in (Debian's `linux-image-*-cloud-amd64` 7.x boots; kernels 6.1 panic in
# Bochs's HPET and TSC calibration). Needs busybox-static, cpio, genisoimage and isolinux.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model="${1:-sapphire_rapids}"
shift || true
filters=("$@")
if [ ${#filters[@]} -eq 0 ]; then
  filters=(every_instruction_set quantized_products_equal quantized_matrices_compute)
elif [ "${filters[*]}" = all ]; then
  filters=()
fi
: "${BOCHS:?set BOCHS to a Bochs binary built with --enable-evex (see the top of this script)}"
: "${KERNEL:?set KERNEL to an x86-64 Linux kernel image (see the top of this script)}"
for tool in busybox cpio genisoimage; do
  command -v "$tool" >/dev/null || { echo "error: \`$tool\` not found; install it (apt-get install busybox-static cpio genisoimage isolinux)" >&2; exit 1; }
done
isolinux=/usr/lib/ISOLINUX/isolinux.bin
ldlinux=/usr/lib/syslinux/modules/bios/ldlinux.c32
[ -f "$isolinux" ] && [ -f "$ldlinux" ] || { echo "error: $isolinux or $ldlinux missing; apt-get install isolinux syslinux-common" >&2; exit 1; }
share="${BXSHARE:-$(dirname "$BOCHS")/bios}"
[ -f "$share/BIOS-bochs-latest" ] || { echo "error: no BIOS-bochs-latest in \`$share\`; set BXSHARE to Bochs's BIOS folder" >&2; exit 1; }
# Installed, the VGA BIOS is `VGABIOS-lgpl-latest`; in Bochs's source tree, in a folder.
vga="$share/VGABIOS-lgpl-latest"
[ -f "$vga" ] || vga="$share/VGABIOS-lgpl/VGABIOS-lgpl-latest.bin"
[ -f "$vga" ] || { echo "error: no VGABIOS-lgpl-latest in \`$share\`; set BXSHARE to Bochs's BIOS folder" >&2; exit 1; }

cd "$here"
binary="$(cargo test -p workbench-distill --lib --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["kind"] == ["lib"] and m["profile"]["test"] and m.get("executable"):
        print(m["executable"])' | tail -1)"
[ -x "$binary" ] || { echo "error: the distill crate's test binary did not build; run \`cargo test -p workbench-distill --lib --no-run\`" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,proc,sys,dev,tmp,t,lib64,lib/x86_64-linux-gnu} "$work/iso/isolinux"
cp "$(command -v busybox)" "$root/bin/"
for a in sh mount grep ip sync poweroff; do ln -s busybox "$root/bin/$a"; done
strip -o "$root/t/tests" "$binary"
# The test binary's shared libraries, at the paths it asks for.
ldd "$binary" | awk '/=> \// {print $3} /^\t\/lib64/ {print $1}' | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
# Fixtures are read by absolute path (CARGO_MANIFEST_DIR).
mkdir -p "$root$here/distill/tests"
cp -r "$here/distill/tests/fixtures" "$root$here/distill/tests/"
cat > "$root/init" <<EOF
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
ip link set lo up
export HOME=/tmp TMPDIR=/tmp
echo "== CPU: \$(grep -o -w -E 'avx2|avx512f|avx512_vnni|avx_vnni' /proc/cpuinfo | sort -u | tr '\n' ' ')"
cd /tmp
/t/tests --test-threads=1 --nocapture ${filters[*]} > /tmp/out.txt 2>&1
echo "== rc=\$?"
grep -E '^test |^test result|panicked|integer dot products' /tmp/out.txt
sync
sleep 2
poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$work/iso/initrd.gz"
cp "$KERNEL" "$work/iso/vmlinuz"
cp "$isolinux" "$ldlinux" "$work/iso/isolinux/"
cat > "$work/iso/isolinux/isolinux.cfg" <<'EOF'
DEFAULT t
PROMPT 0
TIMEOUT 0
LABEL t
  KERNEL /vmlinuz
  APPEND initrd=/initrd.gz console=ttyS0,115200 quiet hpet=disable mitigations=off
EOF
genisoimage -quiet -o "$work/boot.iso" -b isolinux/isolinux.bin -c isolinux/boot.cat \
  -no-emul-boot -boot-load-size 4 -boot-info-table -J -R "$work/iso"
cat > "$work/bochsrc" <<EOF
megs: 2048
cpu: model=$model, count=1, ips=200000000, reset_on_triple_fault=1, ignore_bad_msrs=1
romimage: file=$share/BIOS-bochs-latest
vgaromimage: file=$vga
ata0-master: type=cdrom, path=$work/boot.iso, status=inserted
boot: cdrom
display_library: nogui
com1: enabled=1, mode=file, dev=$work/serial.txt
log: $work/bochs.log
panic: action=fatal
info: action=ignore
clock: sync=none
EOF
echo "Booting Bochs ($model); the tests' output follows when they end" >&2
BXSHARE="$share" "$BOCHS" -q -f "$work/bochsrc" > "$work/bochs.out" 2>&1 || true
tr -d '\r' < "$work/serial.txt" | grep -E '^== |^test |^test result|panicked|integer dot products' || {
  echo "error: the emulated machine printed no test output; its console:" >&2
  tail -20 "$work/serial.txt" >&2
  exit 1
}
grep -q '^== rc=0' "$work/serial.txt"
