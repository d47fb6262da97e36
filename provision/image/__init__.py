"""SD-card images: a first-boot bundle written onto a stock Raspberry Pi OS card
(``coralpi image prepare``).

Nothing here mounts the FAT boot partition (kernels without vfat are common on build
machines): it is read and written with mtools at the byte offset the partition table gives.
The ext4 root is only read, with e2fsprogs' ``debugfs``, to check which release the card holds.
"""
