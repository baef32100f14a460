#!/bin/bash
# Builds a small bootable Debian 12 disk image with real cloud-init (NoCloud only) and
# systemd-networkd, from Debian's packages only. Run as root; testenv.BuildDebianImage
# calls it with an output path and a scratch directory, and converts nothing itself.
#   debian-image.sh OUT.qcow2 WORKDIR
# The root filesystem is made with mmdebstrap (no recommends, no docs, man pages or
# locales), written into an ext4 partition with mkfs.ext4 -d, and made bootable with
# extlinux on a loop device (the one step that needs a mount).
set -euo pipefail
out=$1
work=$2
root=$work/root
raw=$work/disk.raw
mnt=$work/mnt
loop=
cleanup() {
	if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt"; fi
	if [ -n "$loop" ]; then losetup -d "$loop" || true; fi
}
trap cleanup EXIT

mirror=${DROVER_DEBIAN_MIRROR:-http://deb.debian.org/debian}

mmdebstrap --variant=essential --mode=root --format=directory \
	--aptopt='APT::Install-Recommends "false"' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/lintian/*' \
	--include=systemd-sysv,udev,kmod,linux-image-cloud-amd64,cloud-init,python3,iproute2,netbase \
	--essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo COMPRESS=gzip >"$1/etc/initramfs-tools/conf.d/drover"' \
	--customize-hook='chroot "$1" systemctl enable systemd-networkd.service' \
	--customize-hook='chroot "$1" systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service' \
	--customize-hook='echo "LABEL=droverroot / ext4 rw,noatime 0 1" >"$1/etc/fstab"' \
	--customize-hook='echo debian >"$1/etc/hostname"' \
	--customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/var/log/*.log' \
	bookworm "$root" "deb $mirror bookworm main" "deb $mirror bookworm-updates main"

mkdir -p "$root/etc/cloud/cloud.cfg.d"
cat >"$root/etc/cloud/cloud.cfg.d/90-drover.cfg" <<'CFG'
# Drover's test image: the NoCloud seed only (no network metadata services are probed),
# networking rendered for systemd-networkd.
datasource_list: [ NoCloud, None ]
system_info:
  network:
    renderers: [ networkd ]
    activators: [ networkd ]
CFG

kver=$(ls "$root/boot" | sed -n 's/^vmlinuz-//p' | sort -V | tail -1)
[ -n "$kver" ] || { echo "no kernel in $root/boot" >&2; exit 1; }
mkdir -p "$root/boot/extlinux"
cat >"$root/boot/extlinux/extlinux.conf" <<CFG
DEFAULT debian
TIMEOUT 0
PROMPT 0
LABEL debian
  LINUX /boot/vmlinuz-$kver
  INITRD /boot/initrd.img-$kver
  APPEND root=LABEL=droverroot rw console=ttyS0 console=tty0 net.ifnames=0
CFG

# One partition from 1 MiB to the end, bootable; the filesystem gets 256 MiB of room.
used=$(du -sm "$root" | cut -f1)
size=$(( used + 256 + 1 ))
rm -f "$raw"
truncate -s "${size}M" "$raw"
echo 'start=2048, type=83, bootable' | sfdisk -q "$raw"
part=$work/part.raw
truncate -s "$(( size - 1 ))M" "$part"
mkfs.ext4 -q -L droverroot -O ^metadata_csum_seed -d "$root" "$part"
dd if="$part" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none
rm -f "$part"
dd if=/usr/lib/EXTLINUX/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none

loop=$(losetup --find --show --offset $((1024 * 1024)) "$raw")
mkdir -p "$mnt"
mount "$loop" "$mnt"
extlinux --install "$mnt/boot/extlinux" >/dev/null
umount "$mnt"
losetup -d "$loop"
loop=

qemu-img convert -q -f raw -O qcow2 "$raw" "$out"
