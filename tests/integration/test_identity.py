#!/usr/bin/env python3
"""Service identities per ISO/IEC 27071 B.3.2.3 (issue 5 part 3,
docs/identity.md), against a real `vrotd --dev` with real workers:

- identity.issue for a service instance: the vTPM makes an AK under its EK
  and an identity key certified by it; the daemon checks the credential
  activation and the certification, the host CA signs in the host TPM.
- R-AUTH-1: two services complete a TLS 1.3 handshake with mutual
  authentication, each private key used inside its own vTPM (vrot-tlspeer,
  tests/tools: TPM2_Sign over the vTPM's data socket for CertificateVerify),
  each verifying the other's chain to the fleet root; after a revocation the
  handshake with the CRL check fails, whichever side is revoked.
- the VM flow, identity.challenge and identity.complete, with the guest
  played by tpm2-tools on the worker's data channel (guesttpm.py; the
  commands are those of docs/identity.md); refused: a replayed or wrong
  answer, a key the AK did not certify, an AK outside the EK's TPM.
- refusals: wrong answer to the credential, a key not certified by the AK,
  a certification over another nonce, a replayed challenge, a VM for
  identity.issue, an unknown instance; nothing issued, events logged."""

import base64
import json
import os
import subprocess

import harness as H
import vrotd as V
import tlspeer
from guesttpm import AK_ALG, AK_ATTRS, KEY_ALG, KEY_ATTRS, GuestTpm
from harness import check
from vrotd import vrotctl

SVC_A = "5a1e0000-0000-4000-8000-00000000000a"
SVC_B = "5a1e0000-0000-4000-8000-00000000000b"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def openssl(*args, input=None, env=None, timeout=60):
    return subprocess.run(["openssl", *args], input=input, env=env, capture_output=True,
                          timeout=timeout)


def tpm2_env(data_sock):
    env = dict(os.environ)
    env["TPM2OPENSSL_TCTI"] = f"swtpm:path={data_sock}"
    env["TSS2_LOG"] = "all+none"
    return env


def issue(d, uuid, name, uri=None):
    params = {"uuid": uuid, "name": name}
    if uri:
        params["uri"] = uri
    return d.call("identity.issue", **params)


def service_files(h, d, uuid, ident):
    info = d.call("instance.info", uuid=uuid)
    chain = ident["chain_pem"]
    return {
        "cert": write(h.path(f"{uuid}.crt"), ident["certificate_pem"]),
        "chain": write(h.path(f"{uuid}.chain"), chain[0]),
        "root": write(h.path("root.pem"), chain[-1]),
        "fullchain": write(h.path(f"{uuid}.full"), ident["certificate_pem"] + chain[0]),
        "handle": ident["handle"],
        "key": f"handle:{ident['handle']}",
        "data": info["data"],
    }


def sign_in_vtpm(h, f, message):
    """A signature over @message by the identity key inside the vTPM
    (tpm2-openssl on the service's data socket)."""
    msg = write(h.path("message"), message)
    sig = h.path("message.sig")
    r = openssl("dgst", "-sha256", "-provider", "default", "-provider", "tpm2",
                "-propquery", "?tpm2.signature", "-sign", f["key"], "-out", sig, msg,
                env=tpm2_env(f["data"]))
    check(r.returncode == 0, f"signing with {f['key']} in the vTPM: {r.stderr!r}")
    return msg, sig


def verifies(h, f, msg, sig):
    pub = h.path("identity-pub.pem")
    r = openssl("x509", "-in", f["cert"], "-pubkey", "-noout", "-out", pub)
    check(r.returncode == 0, f"openssl x509 -pubkey: {r.stderr!r}")
    return openssl("dgst", "-sha256", "-verify", pub, "-signature", sig, msg).returncode == 0


def chain_ok(f, crl=None):
    extra = ["-crl_check", "-CRLfile", crl] if crl else []
    return openssl("verify", "-x509_strict", "-purpose", "sslclient", *extra, "-CAfile",
                   f["root"], "-untrusted", f["chain"], f["cert"])


def test_service_identity():
    with V.Harness("identity") as h:
        d = V.Vrotd(h).start()
        for uuid, name in ((SVC_A, "billing"), (SVC_B, "ledger")):
            d.call("instance.create", uuid=uuid, kind="service", name=name)
            d.call("instance.start", uuid=uuid)
        a = issue(d, SVC_A, "billing", "spiffe://vrot.test/billing")
        b = issue(d, SVC_B, "ledger")
        check(a["handle"] == "0x81000100" and a["uri"] == "spiffe://vrot.test/billing"
              and a["instance"] == SVC_A and a["revoked"] is None, f"identity.issue: {a}")
        check(b["uri"] == f"urn:vrot:identity:{SVC_B}:ledger", f"the default URI: {b['uri']}")
        fa, fb = service_files(h, d, SVC_A, a), service_files(h, d, SVC_B, b)

        # The certificate verifies to the fleet root and says what it must.
        for f in (fa, fb):
            r = chain_ok(f)
            check(r.returncode == 0, f"openssl verify: {r.stdout!r} {r.stderr!r}")
        text = openssl("x509", "-in", fa["cert"], "-noout", "-text").stdout.decode()
        check("URI:spiffe://vrot.test/billing" in text and f"serialNumber = {SVC_A}" in text
              and "TLS Web Server Authentication, TLS Web Client Authentication" in text,
              f"the identity certificate:\n{text}")

        # The private key is in the vTPM: it signs there, under the certified key.
        msg, sig = sign_in_vtpm(h, fa, "an identity key inside the vTPM")
        check(verifies(h, fa, msg, sig), "the vTPM's signature does not verify under the cert")
        check(not verifies(h, fb, msg, sig), "a signature verified under another identity")

        # R-AUTH-1: TLS 1.3 with mutual authentication, each key in its vTPM.
        ok, srv_out, cli_out = tlspeer.handshake(h, fa, fb)
        check(ok, f"TLS 1.3 between the two services:\n{srv_out}\n{cli_out}")
        check("URI spiffe://vrot.test/billing" in cli_out
              and f"URI urn:vrot:identity:{SVC_B}:ledger" in srv_out,
              f"each side names the other:\n{srv_out}\n{cli_out}")
        # The signature is the vTPM's: billing's certificate with the key of
        # ledger's vTPM does not get through the handshake.
        ok, srv_out, cli_out = tlspeer.handshake(h, dict(fa, data=fb["data"]), fb)
        check(not ok, f"a certificate with another vTPM's key:\n{srv_out}\n{cli_out}")

        # A second identity of one service takes the next handle.
        a2 = issue(d, SVC_A, "billing-admin")
        check(a2["handle"] == "0x81000101" and a2["serial"] != a["serial"], f"second: {a2}")

        listed = d.call("identity.list")["identities"]
        check([i["serial"] for i in listed] == [a["serial"], b["serial"], a2["serial"]],
              f"identity.list: {listed}")
        check(len(d.call("identity.list", uuid=SVC_B)["identities"]) == 1, "list of one")

        # Revocation: the CRL signed by the host CA lists it; openssl then refuses.
        crl0 = d.call("host.crl")
        r = d.call("identity.revoke", serial=a["serial"])
        check(r["revoked"], f"identity.revoke: {r}")
        crl = d.call("host.crl")
        check(crl["number"] > crl0["number"], f"the CRL number did not grow: {crl0} {crl}")
        crl_path = write(h.path("host.crl"), crl["pem"])
        check(chain_ok(fa, crl_path).returncode != 0, "a revoked identity passed -crl_check")
        r = chain_ok(fb, crl_path)
        check(r.returncode == 0, f"an unrevoked identity failed -crl_check: {r.stdout!r}")
        crl_text = openssl("crl", "-in", crl_path, "-noout", "-text").stdout.decode()
        check(f"Serial Number: {a['serial']}" in crl_text, f"the CRL:\n{crl_text}")
        V.expect_error(-32602, d.call, "identity.revoke", serial=a["serial"])
        # With the CRL, the revoked service is refused by its peer (either
        # side); the other direction of trust is unaffected without it.
        ok, srv_out, cli_out = tlspeer.handshake(h, fa, fb, crl_path)
        check(not ok and "certificate revoked" in srv_out + cli_out,
              f"a handshake with a revoked identity:\n{srv_out}\n{cli_out}")
        ok, srv_out, cli_out = tlspeer.handshake(h, fb, fa, crl_path)
        check(not ok and "certificate revoked" in srv_out + cli_out,
              f"a revoked client:\n{srv_out}\n{cli_out}")

        # The same through vrotctl (vrotctl(1) "SERVICE IDENTITIES").
        sock = d.socket
        chain_file = h.path("cli-chain.pem")
        rc, out, err = vrotctl(sock, "identity", "issue", SVC_B, "--name", "ledger-cli",
                               "--uri", "spiffe://vrot.test/ledger", "--out", chain_file)
        check(rc == 0 and "key handle:          0x81000101" in out, f"identity issue: {rc} {out} {err}")
        serial = next(l.split()[1] for l in out.splitlines() if l.startswith("serial:"))
        r = openssl("verify", "-CAfile", fb["root"], "-untrusted", chain_file, chain_file)
        check(r.returncode == 0, f"the chain vrotctl wrote: {r.stdout!r} {r.stderr!r}")
        rc, out, err = vrotctl(sock, "identity", "list", SVC_B)
        check(rc == 0 and serial in out and b["serial"] in out and a["serial"] not in out,
              f"identity list: {rc} {out} {err}")
        rc, out, err = vrotctl(sock, "identity", "revoke", serial)
        check(rc == 0 and serial in out, f"identity revoke: {rc} {out} {err}")
        rc, out, err = vrotctl(sock, "crl")
        crl_text = openssl("crl", "-noout", "-text", input=out.encode()).stdout.decode()
        check(rc == 0 and f"Serial Number: {serial}" in crl_text, f"vrotctl crl: {rc} {out} {err}")
        for args, want in ((["identity", "revoke"], 2), (["identity", "issue", SVC_B], 2),
                           (["identity"], 2), (["identity", "revoke", serial], 1),
                           (["identity", "revoke", "0BADC0DE"], 1)):
            rc, out, err = vrotctl(sock, *args)
            check(rc == want and len(err.strip().splitlines()) == 1 and not out,
                  f"vrotctl {args}: {rc} {out!r} {err!r}")

        # Survives a restart: the records are in the MAC'd registry.
        d.stop_clean()
        d.start()
        after = {i["serial"]: i for i in d.call("identity.list")["identities"]}
        check(after[a["serial"]]["revoked"] and not after[b["serial"]]["revoked"],
              f"after a restart: {after}")
        check(f"Serial Number: {a['serial']}" in openssl(
            "crl", "-noout", "-text", input=d.call("host.crl")["pem"].encode()).stdout.decode(),
            "the CRL after a restart")
        d.stop_clean()


# The guest's side of identity.challenge/complete, as docs/identity.md gives
# it: tpm2-tools against the guest's TPM (guesttpm.py).
GUEST_AK = "0x81010002"
GUEST_KEY = "0x81000100"


def guest_key(g, prefix, attrs, alg, handle=None):
    return b64(g.make_key(prefix, attrs, alg, handle))


def b64(data):
    return base64.b64encode(data).decode()


def guest_answer(g, challenge, key=GUEST_KEY, ok=True):
    """The guest's half of identity.complete: the credential activated with
    the AK, and TPM2_Certify of @key by the AK.  Returns the params."""
    g.tools("tpm2_certify", "-c", key, "-C", GUEST_AK, "-g", "sha256", "-o", "attest",
            "-s", "attest.sig", "-f", "plain")
    secret = g.activate(base64.b64decode(challenge["id_object"]),
                        base64.b64decode(challenge["encrypted_secret"]), GUEST_AK, ok=ok)
    return {"challenge": challenge["challenge"], "secret": b64(secret or bytes(32)),
            "attest": b64(g.read("attest")), "signature": b64(g.read("attest.sig"))}


def test_vm_identity():
    vm, other = "5a1e0000-0000-4000-8000-0000000000c1", "5a1e0000-0000-4000-8000-0000000000c2"
    with V.Harness("identity-vm") as h:
        d = V.Vrotd(h).start()
        for uuid, name in ((vm, "web"), (other, "db")):
            d.call("instance.create", uuid=uuid, kind="vm", name=name)
        info = d.call("instance.start", uuid=vm)
        d.call("instance.start", uuid=other)
        with GuestTpm(h, info["ctrl"]) as g:
            g.tools("tpm2_startup", "-c")
            ak = guest_key(g, "ak", AK_ATTRS, AK_ALG, GUEST_AK)
            key = guest_key(g, "key", KEY_ATTRS, KEY_ALG, GUEST_KEY)

            ch = d.call("identity.challenge", uuid=vm, name="web-frontend", ak_public=ak,
                        key_public=key, uri="spiffe://vrot.test/web")
            check(set(ch) == {"challenge", "id_object", "encrypted_secret", "expires_in"},
                  f"identity.challenge: {ch}")
            answer = guest_answer(g, ch)
            ident = d.call("identity.complete", **answer)
            check(ident["instance"] == vm and ident["handle"] is None
                  and ident["uri"] == "spiffe://vrot.test/web", f"identity.complete: {ident}")

            # The certificate is for the guest's key, and chains to the fleet root.
            cert = write(h.path("vm.crt"), ident["certificate_pem"])
            untrusted = write(h.path("vm.chain"), ident["chain_pem"][0])
            root = write(h.path("root.pem"), ident["chain_pem"][-1])
            r = openssl("verify", "-x509_strict", "-CAfile", root, "-untrusted", untrusted, cert)
            check(r.returncode == 0, f"openssl verify: {r.stdout!r} {r.stderr!r}")
            g.tools("tpm2_readpublic", "-c", GUEST_KEY, "-f", "pem", "-o", "guest-key.pem")
            cert_key = openssl("x509", "-in", cert, "-noout", "-pubkey").stdout
            guest_pem = openssl("pkey", "-pubin", "-in", h.path("guest-key.pem")).stdout
            check(cert_key and cert_key == guest_pem, "the certificate is not for the guest's key")
            # ... which signs in the guest's TPM, verifiably under the certificate.
            msg = write(h.path("msg"), "signed in the guest's vTPM")
            g.tools("tpm2_sign", "-c", GUEST_KEY, "-g", "sha256", "-s", "ecdsa", "-f", "plain",
                    "-o", "msg.sig", "msg")
            r = openssl("dgst", "-sha256", "-verify", h.path("guest-key.pem"), "-signature",
                        h.path("msg.sig"), msg)
            check(r.returncode == 0, f"the guest's signature: {r.stdout!r} {r.stderr!r}")

            issued = d.call("identity.list")
            # A replayed answer: the challenge is used up.
            V.expect_error(-32001, d.call, "identity.complete", **answer)
            # A wrong answer to the credential; the challenge is used up anyway.
            ch = d.call("identity.challenge", uuid=vm, name="x", ak_public=ak, key_public=key)
            bad = guest_answer(g, ch)
            right, bad["secret"] = bad["secret"], b64(bytes(32))
            V.expect_error(-32008, d.call, "identity.complete", **bad)
            V.expect_error(-32001, d.call, "identity.complete", **dict(bad, secret=right))
            # An identity key the AK did not certify (it certified another).
            other_key = guest_key(g, "key2", KEY_ATTRS, KEY_ALG)
            ch = d.call("identity.challenge", uuid=vm, name="x", ak_public=ak,
                        key_public=other_key)
            V.expect_error(-32008, d.call, "identity.complete", **guest_answer(g, ch))
            # An AK not in the TPM of the instance's EK: this guest's AK
            # offered for the other VM cannot activate that VM's credential.
            ch = d.call("identity.challenge", uuid=other, name="x", ak_public=ak, key_public=key)
            answer = guest_answer(g, ch, ok=False)
            check(base64.b64decode(answer["secret"]) == bytes(32),
                  "a credential for another VM's EK was activated here")
            V.expect_error(-32008, d.call, "identity.complete", **answer)
            check(d.call("identity.list") == issued, "a refused answer issued an identity")

            # vrotctl relays the same two calls with the guest's files.
            g.make_key("key3", KEY_ATTRS, KEY_ALG, "0x81000101")
            rc, out, err = vrotctl(d.socket, "identity", "challenge", vm, "--name", "web-cli",
                                   "--ak-public", h.path("ak.pub"), "--key-public",
                                   h.path("key3.pub"), "--credential", h.path("credential"))
            check(rc == 0, f"vrotctl identity challenge: {rc} {out} {err}")
            challenge = next(l.split()[1] for l in out.splitlines() if l.startswith("challenge:"))
            g.tools("tpm2_certify", "-c", "0x81000101", "-C", GUEST_AK, "-g", "sha256",
                    "-o", "attest", "-s", "attest.sig", "-f", "plain")
            g.under_ek("tpm2_activatecredential", "-c", GUEST_AK, "-C", "0x81010001",
                       "-i", "credential", "-o", "secret")
            rc, out, err = vrotctl(d.socket, "identity", "complete", challenge,
                                   "--secret", h.path("secret"), "--attest", h.path("attest"),
                                   "--signature", h.path("attest.sig"), "--out", h.path("c.pem"))
            check(rc == 0 and "name:                web-cli" in out,
                  f"vrotctl identity complete: {rc} {out} {err}")
            for args in (["identity", "challenge", vm, "--attestation", "--name", "x",
                          "--ak-public", h.path("ak.pub"), "--credential", h.path("c")],
                         ["identity", "complete", challenge, "--secret", h.path("secret"),
                          "--attest", h.path("attest")]):
                rc, out, err = vrotctl(d.socket, *args)
                check(rc == 2 and len(err.strip().splitlines()) == 1, f"{args}: {rc} {err}")
        log = d.log_text()
        check(log.count("refused: identity.complete") >= 4, f"refusals not logged:\n{log}")
        d.stop_clean()


def test_identity_refusals():
    with V.Harness("identity-bad") as h:
        d = V.Vrotd(h).start()
        vm = "5a1e0000-0000-4000-8000-0000000000f1"
        d.call("instance.create", uuid=vm, kind="vm", name="guest")
        d.call("instance.create", uuid=SVC_A, kind="service", name="svc")
        before = d.call("identity.list")
        # A VM's guest asks itself; a stopped service cannot answer; unknowns.
        V.expect_error(-32602, issue, d, vm, "x")
        V.expect_error(-32602, issue, d, SVC_A, "x")
        d.call("instance.start", uuid=SVC_A)
        V.expect_error(-32001, issue, d, "5a1e0000-0000-4000-8000-0000000000ff", "x")
        for name in ("", "has space", "a/b", "x" * 65):
            V.expect_error(-32602, issue, d, SVC_A, name)
        V.expect_error(-32602, issue, d, SVC_A, "ok", "not a uri")
        V.expect_error(-32602, d.call, "identity.issue", uuid=SVC_A, name="ok", days=0)
        V.expect_error(-32602, d.call, "identity.issue", uuid=SVC_A, name="ok", extra=1)
        V.expect_error(-32001, d.call, "identity.revoke", serial="0BADC0DE")
        V.expect_error(-32602, d.call, "identity.revoke", serial="x" * 41)
        # The guest's two calls: a challenge for a service is refused, an
        # unknown or replayed challenge is not found, garbage publics refused.
        junk = base64.b64encode(b"\x00\x04abcd").decode()
        V.expect_error(-32602, d.call, "identity.challenge", uuid=SVC_A, name="g",
                       ak_public=junk, key_public=junk)
        V.expect_error(-32602, d.call, "identity.challenge", uuid=vm, name="g",
                       ak_public=junk, key_public=junk)
        V.expect_error(-32001, d.call, "identity.complete",
                       challenge="5a1e0000-0000-4000-8000-000000000000",
                       secret=junk, attest=junk, signature=junk)
        check(d.call("identity.list") == before, "a refused call issued an identity")
        log = d.log_text()
        check("refused: identity" in log, "refusals are not logged")
        d.stop_clean()


if __name__ == "__main__":
    H.main([test_service_identity, test_vm_identity, test_identity_refusals])
