#!/usr/bin/env python3
"""Stateblob round trip: GET_STATEBLOB from a running vrot-vtpm, SET_STATEBLOB
into a fresh one, and the guest-visible state (PCRs, NV contents) is the same
there - the path QEMU takes for live migration (R-VTPM-2, R-MIG-5).

With --migrate (how vrotd runs its workers) blobs cross only under the key
of a prepared live migration, given on the migration-key socket
(lib/mkey.h): none without it, none in plaintext, none into a worker with
another key or migration ID, none the wrong way; with it, the round trip
keeps PCRs and NV, and STATUS says which blobs crossed.
"""

import hashlib
import os
import stat

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


MKEY_SET, MKEY_STATUS, MKEY_CLEAR = ptm.MKEY_SET, ptm.MKEY_STATUS, ptm.MKEY_CLEAR
MKEY_OUT, MKEY_IN = ptm.MKEY_OUT, ptm.MKEY_IN
mkey = ptm.mkey


def test_live_migration_key():
    with H.Harness("vrot-stateblob-mkey") as h:
        msrc = h.path("src.migrate")
        src = h.start_vtpm(name="src", server=True,
                           extra=["--flags", "not-need-init,startup-clear", "--migrate", msrc])
        H.check(stat.S_IMODE(os.stat(msrc).st_mode) == 0o600, "the migration-key socket is not 0600")
        H.tpm2(src, "pcrextend", f"{PCR}:sha256=" + "5a" * 32)
        H.tpm2(src, "nvdefine", NV_INDEX, "-C", "o", "-s", str(len(NV_DATA)),
               "-a", "ownerread|ownerwrite")
        path = h.path("nvdata")
        with open(path, "wb") as f:
            f.write(NV_DATA)
        H.tpm2(src, "nvwrite", NV_INDEX, "-C", "o", "-i", path)

        # No migration prepared: no blob at all, plaintext or sealed.
        with ptm.Ctrl(src.ctrl) as c:
            for flags in (ptm.STATE_FLAG_DECRYPTED, 0):
                r = c.get_stateblob(ptm.BLOB_TYPE_PERMANENT, flags=flags)
                H.check(r.result == 0x09 and r.length == 0, f"GET_STATEBLOB without a key: {r!r}")
        H.check("no live migration is prepared" in src.log_text(), "no log line for the refusal")
        # Malformed requests are answered BAD_PARAMETER and change nothing.
        bind = b"VMK1\x04\x02" + b"\0" * 48           # BIND evicting the ECC EK, then
        for bad in (b"VMK1", b"VMK2\x02", b"VMK1\x01\x03" + b"\0" * 48, b"VMK1\x02x",
                    bind + b"\x01\x02\x00\x01\x30",       # ... a certificate for it,
                    bind + b"\x01\x01\x00\x00",           # ... an empty one,
                    bind + b"\x01\x01\x00\x05\x30"):      # ... one cut short
            H.check(mkey(msrc, 0, raw=bad)[0] == 0x03, f"malformed request {bad!r} accepted")

        mid, key = os.urandom(16), os.urandom(32)
        H.check(mkey(msrc, MKEY_SET, MKEY_OUT, mid, key)[0] == 0, "SET on the source failed")
        blobs = get_blobs(src, ptm.STATE_FLAG_DECRYPTED)       # DECRYPTED is ignored now
        H.check(all(f == ptm.STATE_FLAG_ENCRYPTED for _, f in blobs.values()),
                "blobs under a migration key must come back ENCRYPTED")
        H.check(all(NV_DATA not in d for d, _ in blobs.values()), "a migration blob shows NV data")
        res, role, got_id, exported, _ = mkey(msrc, MKEY_STATUS)
        H.check(res == 0 and role == MKEY_OUT and got_id == mid and exported == 0b110,
                f"STATUS on the source: {res} {role} {got_id.hex()} {exported:#b}")

        def destination(name, role=None, k=key, i=mid):
            mdst = h.path(f"{name}.migrate")
            d = h.start_vtpm(name=name, server=True, key=b"\x22" * 32,
                             extra=["--flags", "not-need-init", "--migrate", mdst])
            if role:
                H.check(mkey(mdst, MKEY_SET, role, i, k)[0] == 0, f"SET on {name} failed")
            return d, mdst

        for name, role, k, i, want in (
                ("nokey", None, key, mid, 0x09),                # nothing prepared
                ("wrongway", MKEY_OUT, key, mid, 0x09),         # a source does not take blobs
                ("otherkey", MKEY_IN, os.urandom(32), mid, 0x21),
                ("otherid", MKEY_IN, key, os.urandom(16), 0x21)):
            d, _ = destination(name, role, k, i)
            res = set_blobs(d, blobs)
            H.check(res[0] == want, f"{name}: SET_STATEBLOB gave {res}, expected {want:#x}")
        d, mdst = destination("dst", MKEY_IN)
        with ptm.Ctrl(d.ctrl) as c:
            H.check(c.stop().result == 0, "STOP failed")
            plain = get_blobs(src, 0)[ptm.BLOB_TYPE_PERMANENT][0]
            r = c.set_stateblob(ptm.BLOB_TYPE_PERMANENT, plain, flags=0)
            H.check(r.result == 0x21, f"a plaintext blob into a migration: {r!r}")
        H.check(set_blobs(d, blobs) == [0], "SET_STATEBLOB + INIT under the migration key failed")
        H.check(pcr16(d) == pcr16(src), "PCR 16 differs after the live-migration round trip")
        out = H.tpm2(d, "nvread", NV_INDEX, "-C", "o", "-s", str(len(NV_DATA)))
        H.check(out == NV_DATA, f"NV contents differ: {out!r}")
        res, role, got_id, _, imported = mkey(mdst, MKEY_STATUS)
        H.check(res == 0 and role == MKEY_IN and got_id == mid and imported == 0b110,
                f"STATUS on the destination: {res} {role} {imported:#b}")
        # CLEAR: the source hands out nothing again.
        H.check(mkey(msrc, MKEY_CLEAR)[1] == 0, "CLEAR left a role")
        with ptm.Ctrl(src.ctrl) as c:
            r = c.get_stateblob(ptm.BLOB_TYPE_PERMANENT, flags=0)
            H.check(r.result == 0x09, f"GET_STATEBLOB after CLEAR: {r!r}")


if __name__ == "__main__":
    H.main([test_plaintext_round_trip, test_sealed_blobs_stay_with_their_instance,
            test_live_migration_key])
