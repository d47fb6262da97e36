"""Reading a disk image's (or card's) partition table with ``sfdisk --json``.

Only reads: offsets and sizes in bytes, and which partition is the FAT boot partition and
which the Linux root, told by the partition type and, for the boot partition, by the FAT
boot sector itself.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from provision.image.errors import ImageError

#: MBR partition types of FAT file systems (FAT12, FAT16 <32M, FAT16, FAT32 CHS/LBA, FAT16 LBA).
FAT_MBR_TYPES = frozenset({"1", "4", "6", "b", "c", "e"})
LINUX_MBR_TYPES = frozenset({"83"})
#: GPT type GUIDs: EFI system and Microsoft basic data (both used for a FAT boot partition).
FAT_GPT_TYPES = frozenset(
    {
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
    }
)
LINUX_GPT_TYPES = frozenset(
    {
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4",  # Linux filesystem
        "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",  # Linux root (arm64)
        "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3",  # Linux root (arm32)
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",  # Linux root (x86-64)
    }
)


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes from the start of the disk
    size: int  # bytes
    type: str  # MBR type (hex, lower case, no 0x) or GPT type GUID (upper case)

    @property
    def end(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class PartitionTable:
    label: str  # "dos" or "gpt"
    sector_size: int
    partitions: tuple[Partition, ...]

    @property
    def end(self) -> int:
        """Byte just past the last partition: the smallest card that holds the table."""
        return max((p.end for p in self.partitions), default=0)

    def boot_candidates(self) -> list[Partition]:
        types = FAT_MBR_TYPES if self.label == "dos" else FAT_GPT_TYPES
        return [p for p in self.partitions if p.type in types]

    def root_candidates(self) -> list[Partition]:
        types = LINUX_MBR_TYPES if self.label == "dos" else LINUX_GPT_TYPES
        return [p for p in self.partitions if p.type in types]


def _normal_type(label: str, value: str) -> str:
    value = str(value).strip()
    if label == "dos":
        return value.lower().removeprefix("0x")
    return value.upper()


def parse_sfdisk_json(text: str, where: str) -> PartitionTable:
    """The table from ``sfdisk --json`` output (pure; ``where`` names the target in errors)."""
    try:
        table = json.loads(text)["partitiontable"]
        label = str(table["label"])
        sector = int(table.get("sectorsize", 512))
        parts = []
        for index, raw in enumerate(table.get("partitions", []), start=1):
            node = str(raw.get("node", ""))
            digits = "".join(ch for ch in node[-3:] if ch.isdigit())
            number = int(digits) if node and node[-1].isdigit() and digits else index
            parts.append(
                Partition(
                    number,
                    int(raw["start"]) * sector,
                    int(raw["size"]) * sector,
                    _normal_type(label, raw["type"]),
                )
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ImageError(f"{where}: unreadable partition table ({exc})") from None
    return PartitionTable(label, sector, tuple(parts))


def read_table(target: Path) -> PartitionTable:
    """The partition table of an image file or block device; ImageError when there is none."""
    proc = subprocess.run(
        ["sfdisk", "--json", str(target)],
        capture_output=True,
        text=True,
        check=False,
        env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output"
        raise ImageError(
            f"{target}: not a disk image: no partition table found ({why}). Give a Raspberry "
            "Pi OS .img file (uncompressed) or the card's whole-disk device, not a partition."
        )
    table = parse_sfdisk_json(proc.stdout, str(target))
    if not table.partitions:
        raise ImageError(f"{target}: the partition table lists no partitions")
    return table


def fat_kind(boot_sector: bytes) -> str | None:
    """ "FAT12"/"FAT16"/"FAT32" when ``boot_sector`` (the first 512 bytes) is a FAT one."""
    if len(boot_sector) < 512 or boot_sector[510:512] != b"\x55\xaa":
        return None
    if boot_sector[0x52:0x5A].startswith(b"FAT32"):
        return "FAT32"
    label = boot_sector[0x36:0x3E]
    for kind in ("FAT12", "FAT16"):
        if label.startswith(kind.encode()):
            return kind
    if label.startswith(b"FAT"):
        return "FAT16"
    return None


def read_at(target: Path, offset: int, length: int) -> bytes:
    with target.open("rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def find_boot_partition(target: Path, table: PartitionTable) -> Partition:
    """The first partition of a FAT type whose boot sector really is FAT."""
    candidates = table.boot_candidates()
    for part in candidates:
        if fat_kind(read_at(target, part.start, 512)) is not None:
            return part
    if candidates:
        numbers = ", ".join(str(p.number) for p in candidates)
        raise ImageError(
            f"{target}: partition {numbers} has a FAT type but holds no FAT file system "
            "(not formatted, or damaged): no FAT boot partition to write to"
        )
    kinds = ", ".join(f"{p.number}: type {p.type}" for p in table.partitions)
    raise ImageError(
        f"{target}: no FAT boot partition ({kinds}); a Raspberry Pi OS card has a FAT32 "
        "boot partition (type c) followed by an ext4 root (type 83)"
    )


def find_root_partition(target: Path, table: PartitionTable) -> Partition:
    candidates = table.root_candidates()
    if not candidates:
        raise ImageError(f"{target}: no Linux root partition in the partition table")
    return candidates[0]
