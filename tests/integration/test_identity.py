#!/usr/bin/env python3
"""Service identities per ISO/IEC 27071 B.3.2.3 (issue 5 part 3,
docs/identity.md), against a real `vrotd --dev` with real workers:

- identity.issue for a service instance: the vTPM makes an AK under its EK
  and an identity key certified by it; the daemon checks the credential
  activation and the certification, the host CA signs in the host TPM.
- R-AUTH-1: two services complete a TLS 1.3 handshake with mutual
  authentication, each private key used inside its own vTPM through the
  tpm2-openssl provider on the vTPM's data socket, each verifying the
  other's chain to the fleet root; after a revocation the handshake with the
  CRL check fails.
- the VM flow, identity.challenge and identity.complete, with the guest
  played by tpm2-tools over the worker's control channel (docs/identity.md
  lists the same commands).
- refusals: wrong answer to the credential, a key not certified by the AK,
  a certification over another nonce, a replayed challenge, a VM for
  identity.issue, an unknown instance; nothing issued, events logged."""

import base64
import json
import os
import select
import socket
import subprocess
import time

import harness as H
import vrotd as V
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_accepting(proc, timeout=30.0):
    """Reads s_server's output up to its "ACCEPT" line (it listens then);
    returns what it read.  A probe connection would use up -naccept 1."""
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and b"ACCEPT" not in seen:
        r, _, _ = select.select([proc.stdout], [], [], 0.5)
        if r:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    return seen


def tls_handshake(server, client, crl=None):
    """openssl s_server (server's key in its vTPM) and s_client (client's key
    in its vTPM), TLS 1.3, each requiring and verifying the other's chain to
    the fleet root.  Returns (ok, server output, client output)."""
    port = free_port()
    # The default provider first: for what both offer (digests) OpenSSL takes
    # the first, so only the signature with the key runs in the vTPM.  (With
    # tpm2 first, every TLS hash context is a TPM hash sequence, and libtpms
    # runs out of object slots when libssl copies one.)
    common = ["-provider", "default", "-provider", "tpm2", "-propquery", "?tpm2.signature",
              "-tls1_3",
              "-CAfile", server["root"], "-verify_return_error"]
    crl_opts = ["-crl_check", "-CRLfile", crl] if crl else []
    srv = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-naccept", "1",
         "-cert", server["cert"], "-cert_chain", server["chain"],
         "-key", server["key"], "-Verify", "2", *common, *crl_opts],
        env=tpm2_env(server["data"]), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    try:
        early = wait_accepting(srv)
        cli = subprocess.run(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
             "-cert", client["cert"], "-cert_chain", client["chain"], "-key", client["key"],
             "-verify", "2", *common, *crl_opts],
            env=tpm2_env(client["data"]), input=b"Q\n", capture_output=True, timeout=60)
        cli_out = (cli.stdout + cli.stderr).decode(errors="replace")
        try:
            srv_out = (early + srv.communicate(timeout=15)[0]).decode(errors="replace")
        except subprocess.TimeoutExpired:
            srv.kill()
            srv_out = (early + srv.communicate()[0]).decode(errors="replace")
        ok = (cli.returncode == 0 and "Verify return code: 0 (ok)" in cli_out
              and "TLSv1.3" in cli_out and "Verification: OK" in cli_out)
        return ok, srv_out, cli_out
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()


def service_files(h, d, uuid, ident):
    info = d.call("instance.info", uuid=uuid)
    chain = ident["chain_pem"]
    return {
        "cert": write(h.path(f"{uuid}.crt"), ident["certificate_pem"]),
        "chain": write(h.path(f"{uuid}.chain"), chain[0]),
        "root": write(h.path("root.pem"), chain[-1]),
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
    H.main([test_service_identity, test_identity_refusals])
