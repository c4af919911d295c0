#!/usr/bin/env python3
"""Stateblob round trip: GET_STATEBLOB from a running vrot-vtpm, SET_STATEBLOB
into a fresh one, and the guest-visible state (PCRs, NV contents) is the same
there - the path QEMU takes for live migration (R-VTPM-2, R-MIG-5 groundwork).
"""

import hashlib
import os

import harness as H
import ptm

NV_INDEX = "0x1500020"
NV_DATA = b"vrot stateblob round trip"
PCR = 16


def pcr16(srv):
    out = H.tpm2(srv, "pcrread", f"sha256:{PCR}", "-o", "/dev/stdout")
    return out[-32:]


def prepare_source(h):
    src = h.start_vtpm(name="src", server=True, extra=["--flags", "not-need-init,startup-clear"])
    H.tpm2(src, "pcrextend", f"{PCR}:sha256=" + "5a" * 32)
    H.tpm2(src, "nvdefine", NV_INDEX, "-C", "o", "-s", str(len(NV_DATA)),
          "-a", "ownerread|ownerwrite")
    path = h.path("nvdata")
    with open(path, "wb") as f:
        f.write(NV_DATA)
    H.tpm2(src, "nvwrite", NV_INDEX, "-C", "o", "-i", path)
    want = hashlib.sha256(b"\0" * 32 + bytes.fromhex("5a" * 32)).digest()
    H.check(pcr16(src) == want, "PCR 16 on the source is not the extended value")
    return src


def get_blobs(srv, flags):
    blobs = {}
    with ptm.Ctrl(srv.ctrl) as c:
        for btype in (ptm.BLOB_TYPE_PERMANENT, ptm.BLOB_TYPE_VOLATILE):
            r = c.get_stateblob(btype, flags=flags)
            H.check(r.result == 0 and r.length > 0, f"GET_STATEBLOB {btype}: {r!r}")
            blobs[btype] = (r.data, r.state_flags)
        r = c.get_stateblob(ptm.BLOB_TYPE_SAVESTATE, flags=flags)
        H.check(r.result == 0x800 and r.length == 0,
                f"savestate of a running TPM must be TPM_RETRY with no data: {r!r}")
    return blobs


def set_blobs(srv, blobs):
    with ptm.Ctrl(srv.ctrl) as c:
        H.check(c.stop().result == 0, "STOP failed")
        results = [c.set_stateblob(t, data, flags=sflags).result
                   for t, (data, sflags) in sorted(blobs.items())]
        if any(results):
            return results
        return [c.init(0).result]


def test_plaintext_round_trip():
    with H.Harness("vrot-stateblob") as h:
        src = prepare_source(h)
        blobs = get_blobs(src, ptm.STATE_FLAG_DECRYPTED)
        H.check(all(f == 0 for _, f in blobs.values()), "DECRYPTED blobs must come back unflagged")
        # Another host's worker: other state dir, other state key, same instance.
        dst = h.start_vtpm(name="dst", server=True, key=b"\x22" * 32,
                           extra=["--flags", "not-need-init"])
        H.check(set_blobs(dst, blobs) == [0], "SET_STATEBLOB + INIT on the destination failed")
        H.check(pcr16(dst) == pcr16(src), "PCR 16 differs after the round trip")
        out = H.tpm2(dst, "nvread", NV_INDEX, "-C", "o", "-s", str(len(NV_DATA)))
        H.check(out == NV_DATA, f"NV contents differ: {out!r}")
        # The destination sealed what it took in under its own key.
        H.check(os.path.getsize(os.path.join(dst.state_dir, "permall")) > 0, "no permall written")


def test_sealed_blobs_stay_with_their_instance():
    with H.Harness("vrot-stateblob") as h:
        src = prepare_source(h)
        blobs = get_blobs(src, 0)
        H.check(all(f == ptm.STATE_FLAG_ENCRYPTED for _, f in blobs.values()),
                "blobs asked for without DECRYPTED must come back ENCRYPTED")
        H.check(all(NV_DATA not in d for d, _ in blobs.values()), "sealed blob shows NV data")
        other = h.start_vtpm(name="other", server=True, uuid="00000000-0000-4000-8000-000000000001",
                             extra=["--flags", "not-need-init"])
        res = set_blobs(other, blobs)
        H.check(res[0] == 0x21, f"another instance must refuse the sealed blob (0x21), got {res}")
        same = h.start_vtpm(name="same", server=True, extra=["--flags", "not-need-init"])
        H.check(set_blobs(same, blobs) == [0], "the same instance must take its sealed blobs")
        H.check(pcr16(same) == pcr16(src), "PCR 16 differs after the sealed round trip")


if __name__ == "__main__":
    H.main([test_plaintext_round_trip, test_sealed_blobs_stay_with_their_instance])
