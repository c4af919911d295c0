#!/usr/bin/env python3
"""Linked attestation (issue 7 part 1, docs/attestation.md) against real
`vrotd --dev` daemons with real workers and simulated host TPMs:

- `vrotctl attest` of a service whose vTPM PCR 16 the service extended
  (tpm2-tools on its data socket); `vrotctl verify` offline: every check
  passes against a policy of the host's and the guest's PCR values;
- each of an altered PCR, a wrong nonce, a vTPM quote paired with another
  host's quote, an unknown host root, a revoked AK certificate and a guest
  state outside the policy is refused, and the verdict names the check;
- after the revocation the daemon makes and certifies a new AK;
- a VM: the guest (tpm2-tools on the worker's data channel, guesttpm.py)
  gets its AK certified (identity.challenge with purpose "attestation"),
  extends a PCR and quotes; instance.attest adds the host's half and the
  bundle verifies; a quote over another nonce or with other PCR values is
  refused;
- refusals of instance.attest: bad nonce or PCR lists, a VM without its
  guest's quote; malformed bundles and policies are errors, not verdicts."""

import base64
import copy
import json
import os
import subprocess

import harness as H
import vrotd as V
from guesttpm import AK_ALG, AK_ATTRS, GuestTpm
from harness import check

SVC = "5a1e0000-0000-4000-8000-0000000000a1"
OTHER = "5a1e0000-0000-4000-8000-0000000000b1"


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def verify(h, bundle, nonce, root, policy, crl=None):
    """vrotctl verify; returns (exit status, {check: (ok, detail)}, output)."""
    argv = [V.vrotctl_binary(), "verify", bundle, "--root", root, "--policy", policy,
            "--nonce", nonce] + (["--crl", crl] if crl else [])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    checks = {}
    for line in r.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] in ("ok", "FAIL"):
            checks[parts[1]] = (parts[0] == "ok", parts[2] if len(parts) > 2 else "")
    return r.returncode, checks, r.stdout + r.stderr


def failed(checks):
    return sorted(name for name, (ok, _) in checks.items() if not ok)


def service(d, uuid, name):
    d.call("instance.create", uuid=uuid, kind="service", name=name)
    return d.call("instance.start", uuid=uuid)["data"]


def attest(h, d, uuid, nonce, name):
    path = h.path(name)
    rc, out, err = V.vrotctl(d.socket, "attest", uuid, "--nonce", nonce, "--pcrs", "0-7,16",
                             "--out", path)
    check(rc == 0, f"vrotctl attest: {rc} {out} {err}")
    with open(path) as f:
        return path, json.load(f)


def test_linked_attestation():
    with V.Harness("attest") as h:
        d = V.Vrotd(h).start()
        data = service(d, SVC, "billing")
        # The service measures something into its vTPM.
        env = dict(os.environ, TPM2TOOLS_TCTI=f"swtpm:path={data}", TSS2_LOG="all+none")
        r = subprocess.run(["tpm2_pcrextend", "16:sha256=" + "ab" * 32], env=env,
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"tpm2_pcrextend: {r.stderr}")

        nonce = os.urandom(20).hex()
        path, b = attest(h, d, SVC, nonce, "bundle.json")
        check(b["vtpm"]["pcrs"]["16"] != "00" * 32, f"PCR 16 not extended: {b['vtpm']['pcrs']}")
        root = h.path("root.pem")
        with open(root, "w") as f:
            f.write(b["host"]["ca_chain_pem"][-1])
        policy = write_json(h.path("policy.json"), {
            "host": [{"0": "ff" * 32}, dict(b["host"]["pcrs"])],
            "guest": [{"16": b["vtpm"]["pcrs"]["16"]}]})

        rc, checks, out = verify(h, path, nonce, root, policy)
        check(rc == 0 and len(checks) == 12 and not failed(checks)
              and "verdict: trusted" in out, f"a good bundle:\n{out}")

        # An altered PCR value.
        bad = copy.deepcopy(b)
        bad["vtpm"]["pcrs"]["16"] = "00" * 32
        rc, checks, out = verify(h, write_json(h.path("altered.json"), bad), nonce, root, policy)
        check(rc == 1 and "vtpm-pcrs" in failed(checks), f"an altered PCR:\n{out}")
        # The wrong nonce.
        rc, checks, out = verify(h, path, os.urandom(20).hex(), root, policy)
        check(rc == 1 and "nonce" in failed(checks), f"a wrong nonce:\n{out}")
        # A guest state the policy does not accept.
        strict = write_json(h.path("strict.json"), {"host": [dict(b["host"]["pcrs"])],
                                                    "guest": [{"16": "00" * 32}]})
        rc, checks, out = verify(h, path, nonce, root, strict)
        check(rc == 1 and failed(checks) == ["guest-policy"], f"a guest outside policy:\n{out}")

        # Another host, with its own simulated TPM and fleet root.
        d2 = V.Vrotd(h, name="other", state_dir=h.path("other-state"),
                     runtime_dir=h.path("other-run")).start()
        service(d2, OTHER, "ledger")
        other_path, other = attest(h, d2, OTHER, nonce, "other.json")
        other_root = h.path("other-root.pem")
        with open(other_root, "w") as f:
            f.write(other["host"]["ca_chain_pem"][-1])
        paired = copy.deepcopy(b)
        for k in ("ak_public", "attest", "signature", "pcrs"):
            paired["host"][k] = other["host"][k]
        rc, checks, out = verify(h, write_json(h.path("paired.json"), paired), nonce, root, policy)
        check(rc == 1 and "link" in failed(checks), f"a vTPM quote with another host's:\n{out}")
        # The other host's bundle against our root: an unknown host root.
        rc, checks, out = verify(h, other_path, nonce, root, policy)
        check(rc == 1 and "host-chain" in failed(checks), f"an unknown host root:\n{out}")
        rc, checks, out = verify(h, path, nonce, other_root, policy)
        check(rc == 1 and "host-chain" in failed(checks), f"a root we do not trust:\n{out}")
        d2.stop_clean()

        # Revoking the AK certificate: the bundle fails with a fresh CRL ...
        ak = [i for i in d.call("identity.list", uuid=SVC)["identities"]
              if i["name"] == "attestation-key"]
        check(len(ak) == 1 and ak[0]["handle"] == "0x81010002", f"the AK identity: {ak}")
        d.call("identity.revoke", serial=ak[0]["serial"])
        crl = h.path("host.crl")
        rc, _, err = V.vrotctl(d.socket, "crl", "--out", crl)
        check(rc == 0, f"vrotctl crl: {err}")
        rc, checks, out = verify(h, path, nonce, root, policy, crl=crl)
        check(rc == 1 and failed(checks) == ["ak-revocation"], f"a revoked AK:\n{out}")
        # ... and the next attestation proves and certifies a new AK.
        nonce2 = os.urandom(20).hex()
        path2, b2 = attest(h, d, SVC, nonce2, "bundle2.json")
        check(b2["vtpm"]["ak_public"] != b["vtpm"]["ak_public"], "the revoked AK was used again")
        rc, checks, out = verify(h, path2, nonce2, root, policy, crl=crl)
        check(rc == 0, f"the bundle with the new AK:\n{out}")
        log = d.log_text()
        check("attestation key's certificate is revoked" in log, "the new AK is not logged")
        d.stop_clean()


def b64(data):
    return base64.b64encode(data).decode()


def test_vm_attestation():
    vm = "5a1e0000-0000-4000-8000-0000000000c7"
    ak_handle = "0x81010002"
    with V.Harness("attest-vm") as h:
        d = V.Vrotd(h).start()
        d.call("instance.create", uuid=vm, kind="vm", name="web")
        info = d.call("instance.start", uuid=vm)
        nonce = os.urandom(20)
        with GuestTpm(h, info["ctrl"]) as g:
            g.tools("tpm2_startup", "-c")
            V.expect_error(-32602, d.call, "instance.attest", uuid=vm, nonce=b64(nonce))
            # The guest's AK, certified by the host CA after the credential.
            ak = g.make_key("ak", AK_ATTRS, AK_ALG, ak_handle)
            ch = d.call("identity.challenge", uuid=vm, purpose="attestation", ak_public=b64(ak))
            secret = g.activate(base64.b64decode(ch["id_object"]),
                                base64.b64decode(ch["encrypted_secret"]), ak_handle)
            V.expect_error(-32602, d.call, "identity.complete", challenge=ch["challenge"],
                           secret=b64(secret), attest=b64(b"x"), signature=b64(b"y"))
            # The same with vrotctl relaying the guest's files (tpm2-tools' formats).
            rc, out, err = V.vrotctl(d.socket, "identity", "challenge", vm, "--attestation",
                                     "--ak-public", h.path("ak.pub"),
                                     "--credential", h.path("credential"))
            check(rc == 0, f"vrotctl identity challenge: {rc} {out} {err}")
            challenge = next(l.split()[1] for l in out.splitlines() if l.startswith("challenge:"))
            r = g.under_ek("tpm2_activatecredential", "-c", ak_handle, "-C", "0x81010001",
                           "-i", "credential", "-o", "secret")
            rc, out, err = V.vrotctl(d.socket, "--json", "identity", "complete", challenge,
                                     "--secret", h.path("secret"))
            check(rc == 0, f"vrotctl identity complete: {rc} {out} {err}")
            ident = json.loads(out)
            check(ident["name"] == "attestation-key" and ident["handle"] is None,
                  f"the guest's AK certificate: {ident}")
            V.expect_error(-32001, d.call, "identity.complete", challenge=challenge,
                           secret=b64(g.read("secret")))

            # The guest measures, then quotes over the verifier's nonce.
            g.tools("tpm2_pcrextend", "16:sha256=" + "cd" * 32)
            g.tools("tpm2_quote", "-c", ak_handle, "-l", "sha256:0,16", "-q", nonce.hex(),
                    "-m", "quote.msg", "-s", "quote.sig", "-f", "plain", "-g", "sha256")
            g.tools("tpm2_pcrread", "sha256:0,16", "-o", "pcrs.bin")
            values = g.read("pcrs.bin")
            check(len(values) == 64, f"tpm2_pcrread -o: {len(values)} bytes")
            quote = {"ak_public": b64(ak), "attest": b64(g.read("quote.msg")),
                     "signature": b64(g.read("quote.sig")),
                     "pcr_values": {"0": values[:32].hex(), "16": values[32:].hex()}}

        # A quote over another nonce, or with other values, is refused.
        V.expect_error(-32008, d.call, "instance.attest", uuid=vm, nonce=b64(os.urandom(20)),
                       **quote)
        V.expect_error(-32008, d.call, "instance.attest", uuid=vm, nonce=b64(nonce),
                       **dict(quote, pcr_values={"0": "00" * 32, "16": "00" * 32}))
        V.expect_error(-32602, d.call, "instance.attest", uuid=vm, nonce=b64(nonce),
                       pcrs=[0], **quote)
        b = d.call("instance.attest", uuid=vm, nonce=b64(nonce), **quote)
        check(b["vtpm"]["pcrs"]["16"] == values[32:].hex(), f"the bundle's PCRs: {b['vtpm']}")
        path = write_json(h.path("vm-bundle.json"), b)
        root = h.path("root.pem")
        with open(root, "w") as f:
            f.write(b["host"]["ca_chain_pem"][-1])
        policy = write_json(h.path("policy.json"), {"host": [{}],
                                                    "guest": [{"16": values[32:].hex()}]})
        rc, checks, out = verify(h, path, nonce.hex(), root, policy)
        check(rc == 0 and len(checks) == 12, f"the VM's bundle:\n{out}")
        d.stop_clean()


def test_attest_refusals():
    with V.Harness("attest-bad") as h:
        d = V.Vrotd(h).start()
        vm = "5a1e0000-0000-4000-8000-0000000000c9"
        d.call("instance.create", uuid=vm, kind="vm", name="guest")
        d.call("instance.start", uuid=vm)
        service(d, SVC, "svc")
        nonce = "AAECAwQFBgcICQ=="
        V.expect_error(-32602, d.call, "instance.attest", uuid=vm, nonce=nonce)
        V.expect_error(-32602, d.call, "instance.attest", uuid=SVC, nonce=nonce,
                       ak_public=nonce, attest=nonce, signature=nonce, pcr_values={"0": "00" * 32})
        V.expect_error(-32602, d.call, "instance.attest", uuid=SVC, nonce="A" * 100)
        V.expect_error(-32602, d.call, "instance.attest", uuid=SVC, nonce=nonce, pcrs=[24])
        V.expect_error(-32602, d.call, "instance.attest", uuid=SVC, nonce=nonce, pcrs=[])
        V.expect_error(-32602, d.call, "instance.attest", uuid=SVC, nonce=nonce, pcrs="0-7")
        V.expect_error(-32602, d.call, "instance.attest", uuid=SVC)
        V.expect_error(-32001, d.call, "instance.attest",
                       uuid="5a1e0000-0000-4000-8000-0000000000ff", nonce=nonce)
        check(d.call("identity.list")["identities"] == [], "a refused attest issued an AK")

        # Malformed input to the offline verifier: an error, not a verdict.
        b = d.call("instance.attest", uuid=SVC, nonce=nonce)
        root = h.path("root.pem")
        with open(root, "w") as f:
            f.write(b["host"]["ca_chain_pem"][-1])
        policy = write_json(h.path("policy.json"), {"host": [], "guest": []})
        hexnonce = "000102030405060708090a"[:20]
        for name, text in (("garbage", "not json"), ("array", "[]"),
                           ("extra", json.dumps(dict(b, extra=1))),
                           ("nobase64", json.dumps(dict(b, nonce="!!!"))),
                           ("version", json.dumps(dict(b, version=2)))):
            p = h.path(name + ".json")
            with open(p, "w") as f:
                f.write(text)
            rc, checks, out = verify(h, p, hexnonce, root, policy)
            check(rc == 1 and not checks and out.count("\n") == 1,
                  f"a malformed bundle ({name}): {rc} {out!r}")
        bundle = write_json(h.path("b.json"), b)
        for bad in ({"host": []}, {"host": [], "guest": [], "x": []},
                    {"host": [{"24": "00" * 32}], "guest": []}, {"host": [{"0": "zz"}], "guest": []}):
            rc, checks, out = verify(h, bundle, hexnonce, root,
                                     write_json(h.path("bad-policy.json"), bad))
            check(rc == 1 and not checks, f"a malformed policy {bad}: {rc} {out!r}")
        # An empty policy accepts no state: a verdict, with both policies failed.
        rc, checks, out = verify(h, bundle, hexnonce, root, policy)
        check(rc == 1 and failed(checks) == ["guest-policy", "host-policy"],
              f"an empty policy:\n{out}")
        d.stop_clean()


if __name__ == "__main__":
    H.main([test_linked_attestation, test_vm_attestation, test_attest_refusals])
