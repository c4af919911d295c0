#!/usr/bin/env python3
"""Which private pages does a process hold, and what is in them?

  python3 bench/memprobe.py PID [OTHER_PID]

For every mapping of PID with private pages (present and mapped by this
process only, from /proc/PID/pagemap), counts

  private   pages mapped by this process only
  zero      of those, pages that hold only zero bytes (touched, or written
            with zeroes, but empty: a shared zero page or KSM could hold them)
  same      of those, pages whose content equals the page at the same offset
            of the same mapping in OTHER_PID (another instance of the same
            program): content a fork server or KSM could share.  Pointers
            differ between independently started processes (ASLR), so this
            is a lower bound for what a fork server would share.

Mappings are named as in run.py (object + section guess).  Needs root (or
CAP_SYS_ADMIN + ptrace access) to read pagemap flags and /proc/PID/mem.
"""

import os
import struct
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")
PM_PRESENT = 1 << 63
PM_EXCLUSIVE = 1 << 56


def rollup(pid):
    """smaps_rollup fields (KiB), a few of /proc/PID/status, and
    Private = Private_Clean + Private_Dirty."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1])
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:", "VmPTE:", "Threads:")):
                k, v = line.split(":", 1)
                fields[k] = int(v.split()[0])
    fields["Private"] = fields["Private_Clean"] + fields["Private_Dirty"]
    return fields


def smaps(pid):
    """The mappings of @pid: dicts with start, end, perms, offset, path, fields."""
    maps, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if "-" in first and not first.endswith(":"):
                parts = line.split(None, 5)
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                cur = {"start": lo, "end": hi, "perms": parts[1], "offset": int(parts[2], 16),
                       "path": parts[5].strip() if len(parts) > 5 else ""}
                maps.append(cur)
            elif cur is not None and line.rstrip().endswith(" kB"):
                k, v = line.split(":", 1)
                cur[k] = int(v.split()[0])
    return maps


def label_mappings(maps):
    """Name each mapping as object + section guess.

    File mappings are named after their file; their section is guessed from
    the permissions: r-xp text, rw-p .data, r--p with dirty pages the RELRO
    area (.data.rel.ro / .got, written by the dynamic linker, then made
    read-only), other r--p headers/.rodata.  An anonymous mapping that
    directly follows a file's rw-p mapping is that file's .bss.
    """
    prev = None
    for m in maps:
        path = m["path"]
        if path.startswith("/"):
            obj = os.path.basename(path)
            if "x" in m["perms"]:
                sec = "text"
            elif "w" in m["perms"]:
                sec = ".data"
            elif m.get("Private_Dirty", 0):
                sec = "relro"
            else:
                sec = "rodata"
        elif path == "" and prev is not None and prev["path"].startswith("/") \
                and prev["perms"].startswith("rw") and prev["end"] == m["start"]:
            obj, sec = os.path.basename(prev["path"]), ".bss"
        elif path == "":
            obj, sec = "[anon]", m["perms"]
        else:
            obj, sec = path, ""
        m["obj"], m["sec"] = obj, sec
        m["Private"] = m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)
        prev = m
    return maps


def breakdown(pid):
    maps = label_mappings(smaps(pid))
    by_map = {}
    by_obj = {}
    for m in maps:
        key = f"{m['obj']} {m['sec']}".strip()
        e = by_map.setdefault(key, {"private_kib": 0, "private_dirty_kib": 0, "rss_kib": 0,
                                    "size_kib": 0})
        e["private_kib"] += m["Private"]
        e["private_dirty_kib"] += m.get("Private_Dirty", 0)
        e["rss_kib"] += m.get("Rss", 0)
        e["size_kib"] += m.get("Size", 0)
        o = by_obj.setdefault(m["obj"], {"private_kib": 0, "private_dirty_kib": 0})
        o["private_kib"] += m["Private"]
        o["private_dirty_kib"] += m.get("Private_Dirty", 0)
    return {"by_mapping": dict(sorted(by_map.items(), key=lambda kv: -kv[1]["private_kib"])),
            "by_object": dict(sorted(by_obj.items(), key=lambda kv: -kv[1]["private_kib"]))}


def private_pages(pid, m, pagemap):
    """Addresses of the pages of mapping m present and exclusive to pid."""
    n = (m["end"] - m["start"]) // PAGE
    pagemap.seek(m["start"] // PAGE * 8)
    raw = pagemap.read(n * 8)
    out = []
    for i, (e,) in enumerate(struct.iter_unpack("<Q", raw)):
        if e & PM_PRESENT and e & PM_EXCLUSIVE:
            out.append(m["start"] + i * PAGE)
    return out


def read_page(mem, addr):
    try:
        mem.seek(addr)
        return mem.read(PAGE)
    except OSError:
        return None


def probe(pid, other=None):
    """Per mapping label: private, zero and same-as-other page counts (KiB)."""
    maps = label_mappings(smaps(pid))
    omaps = {}
    if other:
        # same label, in order: the k-th mapping called X in both processes
        seen = {}
        for m in label_mappings(smaps(other)):
            key = (m["obj"], m["sec"], seen.get((m["obj"], m["sec"]), 0))
            seen[(m["obj"], m["sec"])] = key[2] + 1
            omaps[key] = m
    res = {}
    seen = {}
    with open(f"/proc/{pid}/pagemap", "rb") as pm, open(f"/proc/{pid}/mem", "rb") as mem, \
            (open(f"/proc/{other}/mem", "rb") if other else open(os.devnull, "rb")) as omem:
        for m in maps:
            idx = seen.get((m["obj"], m["sec"]), 0)
            seen[(m["obj"], m["sec"])] = idx + 1
            if not m.get("Private"):
                continue
            om = omaps.get((m["obj"], m["sec"], idx))
            label = f"{m['obj']} {m['sec']}".strip()
            e = res.setdefault(label, {"private_kib": 0, "zero_kib": 0, "same_kib": 0})
            for addr in private_pages(pid, m, pm):
                data = read_page(mem, addr)
                if data is None:
                    continue
                e["private_kib"] += PAGE // 1024
                if data.count(0) == PAGE:
                    e["zero_kib"] += PAGE // 1024
                elif om is not None and addr - m["start"] < om["end"] - om["start"]:
                    # compare with the other process at the same offset
                    # (stack and heap grow differently; treat as best effort)
                    if read_page(omem, om["start"] + (addr - m["start"])) == data:
                        e["same_kib"] += PAGE // 1024
    return dict(sorted(res.items(), key=lambda kv: -kv[1]["private_kib"]))


def print_probe(res, title, out=print):
    out(title)
    out(f"   {'mapping':40s} {'private':>8s} {'zero':>7s} {'same':>7s}")
    tot = {"private_kib": 0, "zero_kib": 0, "same_kib": 0}
    for label, e in res.items():
        for k in tot:
            tot[k] += e[k]
        out(f"   {label[:40]:40s} {e['private_kib']:8d} {e['zero_kib']:7d} {e['same_kib']:7d}")
    out(f"   {'total':40s} {tot['private_kib']:8d} {tot['zero_kib']:7d} {tot['same_kib']:7d}")
    return tot


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__)
    pid = int(sys.argv[1])
    other = int(sys.argv[2]) if len(sys.argv) == 3 else None
    print_probe(probe(pid, other), f"private pages of pid {pid}, KiB "
                f"(zero: all-zero content; same: equal to pid {other} at the same offset)")


if __name__ == "__main__":
    main()
