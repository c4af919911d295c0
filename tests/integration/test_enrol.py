#!/usr/bin/env python3
"""vrotd without --dev: a host TPM, operator keys and a fleet root of the
test's own, enrolment by `vrotctl host-enrol` (vrotd(8) ENROLMENT,
docs/host-evidence.md).

The host TPM is a swtpm the test starts itself, manufactured by swtpm_setup
with an EK certificate from a local swtpm_localca CA (the "TPM vendor"), as
daemon/devtpm.c does for --dev.  The operator's policy and recovery keys and
the fleet root CA are made with `openssl`; the daemon gets only their public
halves, through vrotd.conf.  The operator's PCR authorisation of the host's
PCR values is made here too (docs/sealing.md, "Operator procedures"), so
that restarts unseal the master key.

Checked: before enrolment the host signs nothing (instance.create refused
with -32007); `vrotctl host-enrol` enrols it; then EK certificates chain to
the test's fleet root through the imported host CA certificate, whose key
is the ca_public the host TPM certified; a restart keeps it enrolled.
Refused, with nothing changed: certificates for another key, from another
root, without CA rights, garbage; on the CA side a replaced nonce and a
wrong credential answer (a relay between vrotctl and vrotd tampers with
them), which must leave vrotctl refusing without signing; evidence against
the wrong vendor CA; and operator keys missing or wrong in vrotd.conf, which
stop the daemon with a message naming the key.

Usage: test_enrol.py [test_name ...]
"""

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Failure, check, main, require, tpm2  # noqa: E402
from vrotd import (vrotctl, INVALID_PARAMS, NOT_ENROLLED, PERMISSION_DENIED, Harness, Vrotd,  # noqa: E402
                   adopted, as_user, expect_error, reap_adopted)

NOBODY = 65534
POLICY_REF = b"vrot state master key v1"
SEAL_PCRS = (0, 2, 4, 7)


# -- helpers -------------------------------------------------------------------

def write(path, data):
    with open(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return path


def run(argv, stdin=None, timeout=120):
    return subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)


def openssl(*args, stdin=None):
    r = run([require("openssl"), *args], stdin=stdin)
    if r.returncode != 0:
        raise Failure(f"openssl {' '.join(args)} exited {r.returncode}:\n"
                      f"{r.stderr.decode(errors='replace')}{r.stdout.decode(errors='replace')}")
    return r.stdout


def cert_pubkey_der(pem):
    pub = openssl("x509", "-pubkey", "-noout", stdin=pem.encode())
    return openssl("pkey", "-pubin", "-outform", "DER", stdin=pub)


def pubkey_point(der):
    """The uncompressed point 04||x||y at the end of a P-256 SubjectPublicKeyInfo."""
    check(len(der) == 91 and der[-65] == 4, f"not a P-256 SubjectPublicKeyInfo ({len(der)} bytes)")
    return der[-65:]


def tpm2b_public_point(blob):
    """04||x||y of an ECC TPM2B_PUBLIC (TPM2 Part 2, 12.2.4)."""
    size, typ, _name_alg, _attrs, policy_len = struct.unpack(">HHHIH", blob[:12])
    check(size == len(blob) - 2 and typ == 0x0023, f"not an ECC TPM2B_PUBLIC: {blob[:12].hex()}")
    p = 12 + policy_len
    sym, = struct.unpack(">H", blob[p:p + 2])
    p += 2 if sym == 0x0010 else 6
    scheme, = struct.unpack(">H", blob[p:p + 2])
    p += 2 if scheme == 0x0010 else 4
    p += 2                                  # curveID
    kdf, = struct.unpack(">H", blob[p:p + 2])
    p += 2 if kdf == 0x0010 else 4
    xl, = struct.unpack(">H", blob[p:p + 2])
    x = blob[p + 2:p + 2 + xl]
    p += 2 + xl
    yl, = struct.unpack(">H", blob[p:p + 2])
    y = blob[p + 2:p + 2 + yl]
    return b"\x04" + x.rjust(32, b"\0") + y.rjust(32, b"\0")


# -- the host TPM ---------------------------------------------------------------

def manufacture_tpm(h, name="host-tpm"):
    """swtpm_setup with an EK certificate from a local swtpm_localca CA.
    Returns (state dir, vendor CA PEM path: root and issuer)."""
    d = h.path(name)
    ca = os.path.join(d, "localca")
    os.makedirs(ca, mode=0o700)
    conf, ca_conf, ca_opts = (os.path.join(d, n) for n in
                              ("swtpm_setup.conf", "swtpm-localca.conf", "swtpm-localca.options"))
    write(conf, f"create_certs_tool = {require('swtpm_localca')}\n"
                f"create_certs_tool_config = {ca_conf}\ncreate_certs_tool_options = {ca_opts}\n"
                "active_pcr_banks = sha256\n")
    write(ca_conf, f"statedir = {ca}\nsigningkey = {ca}/signkey.pem\n"
                   f"issuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n")
    write(ca_opts, "--platform-manufacturer vrot-test\n--platform-version 2.1\n"
                   "--platform-model vrot-test-host\n")
    argv = [require("swtpm_setup"), "--tpm2", "--tpmstate", d, "--create-ek-cert",
            "--create-platform-cert", "--lock-nvram", "--config", conf]
    proc = h.spawn(argv, log=h.path(name + ".setup.log"))
    # swtpm_setup waits for the swtpm it double-forked to be gone, and a
    # zombie counts as alive: as the subreaper that inherits it, reap now.
    deadline = time.monotonic() + 120
    while proc.poll() is None:
        reap_adopted({p.pid for p in h.procs if p.returncode is None})
        check(time.monotonic() < deadline, "swtpm_setup did not finish within 120 s")
        time.sleep(0.01)
    with open(h.path(name + ".setup.log"), errors="replace") as f:
        check(proc.returncode == 0, f"swtpm_setup exited {proc.returncode}:\n{f.read()[-3000:]}")
    vendor = h.path(name + "-vendor-ca.pem")
    with open(os.path.join(ca, "swtpm-localca-rootca-cert.pem")) as r, \
            open(os.path.join(ca, "issuercert.pem")) as i:
        write(vendor, r.read() + i.read())
    return d, vendor


def start_tpm(h, state, name="host-tpm-run"):
    """swtpm on state, started and ready, as vrotd --dev runs its own."""
    return h.start_swtpm(name, server=True, state_dir=state,
                         extra=["--flags", "not-need-init,startup-clear"])


# -- the operator ---------------------------------------------------------------

class Operator:
    """Key pairs and a fleet root CA made with openssl; files in h.path(name)."""

    def __init__(self, h, name="operator"):
        self.h = h
        self.dir = h.path(name)
        os.makedirs(self.dir, mode=0o700)
        p = self.path
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", p("policy.key"))
        openssl("pkey", "-in", p("policy.key"), "-pubout", "-out", p("policy.pub.pem"))
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072",
                "-out", p("recovery.key"))
        openssl("pkey", "-in", p("recovery.key"), "-pubout", "-out", p("recovery.pub.pem"))
        self.root_key, self.root = self.make_root("root", "vrot test fleet root")

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def make_root(self, name, cn):
        key, cert = self.path(name + ".key"), self.path(name + ".pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-subj", f"/CN={cn}", "-days", "3650",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", cert)
        return key, cert

    def sign_csr(self, csr_pem, name, exts, root=None, root_key=None):
        """openssl x509 -req: a certificate for the request's key, with exts."""
        csr = write(self.path(name + ".csr"), csr_pem)
        ext = write(self.path(name + ".ext"), "[v3]\n" + "\n".join(exts) + "\n")
        out = self.path(name + ".pem")
        openssl("x509", "-req", "-in", csr, "-CA", root or self.root, "-CAkey",
                root_key or self.root_key, "-CAcreateserial", "-days", "365", "-extfile", ext,
                "-extensions", "v3", "-out", out)
        with open(out) as f:
            return f.read()

    def pcr_authorisation(self, values):
        """An .auth file authorising values (SEAL_PCRS, sha256) under the
        policy key: the docs/sealing.md format, computed by hand."""
        mask = sum(1 << n for n in SEAL_PCRS)
        selection = struct.pack(">IHB", 1, 0x000B, 3) + mask.to_bytes(3, "little")
        policy = hashlib.sha256(b"\0" * 32 + struct.pack(">I", 0x17F) + selection +
                                hashlib.sha256(values).digest()).digest()
        sig = openssl("dgst", "-sha256", "-sign", self.path("policy.key"),
                      stdin=policy + POLICY_REF)
        point = pubkey_point(openssl("pkey", "-pubin", "-in", self.path("policy.pub.pem"),
                                     "-outform", "DER"))
        tpmt = (struct.pack(">HHIH", 0x0023, 0x000B, 0x00040000, 0) +
                struct.pack(">HHHH", 0x0010, 0x0010, 0x0003, 0x0010) +
                struct.pack(">H", 32) + point[1:33] + struct.pack(">H", 32) + point[33:])
        signer = b"\x00\x0b" + hashlib.sha256(tpmt).digest()
        lines = ["vrot-pcr-authorisation 1", "pcrs sha256:" + ",".join(map(str, SEAL_PCRS))]
        lines += [f"pcr {n} {values[32 * i:32 * i + 32].hex()}" for i, n in enumerate(SEAL_PCRS)]
        lines += [f"policy {policy.hex()}", f"signer {signer.hex()}",
                  f"signature ecdsa-sha256 {sig.hex()}"]
        return "\n".join(lines) + "\n"


class Host:
    """A host TPM, operator material, vrotd.conf and a vrotd without --dev."""

    def __init__(self, h, name="host"):
        self.h, self.name = h, name
        self.tpm_state, self.vendor_ca = manufacture_tpm(h, name + "-tpm")
        self.tpm = start_tpm(h, self.tpm_state, name + "-tpm-run")
        self.op = Operator(h, name + "-operator")
        self.d = Vrotd(h, name, dev=False, config=h.path(name + ".conf"))
        self.authorise_pcrs()
        self.write_conf()

    def authorise_pcrs(self):
        """Read the host's PCRs now, while no vrotd holds the swtpm."""
        out = self.h.path(self.name + "-pcrs.bin")
        tpm2(self.tpm, "pcrread", "sha256:" + ",".join(map(str, SEAL_PCRS)), "-o", out)
        with open(out, "rb") as f:
            values = f.read()
        check(len(values) == 32 * len(SEAL_PCRS), f"tpm2_pcrread gave {len(values)} bytes")
        sealing = os.path.join(self.d.state_dir, "host", "sealing")
        os.makedirs(sealing, mode=0o700)
        write(os.path.join(sealing, "test.auth"), self.op.pcr_authorisation(values))

    def write_conf(self, drop=(), extra="", **override):
        keys = {"policy-key": self.op.path("policy.pub.pem"),
                "recovery-key": self.op.path("recovery.pub.pem"),
                "fleet-root": self.op.root}
        keys.update({k.replace("_", "-"): v for k, v in override.items()})
        # Workers drop to nobody: the default user (vrot-vtpm) need not
        # exist on the test machine.
        text = "[daemon]\nworker-user=nobody\n"
        text += f"[host-tpm]\ntcti=swtpm:path={self.tpm.data}\nseal-pcrs=" + \
            ",".join(map(str, SEAL_PCRS)) + "\n[operator]\n"
        text += "".join(f"{k}={v}\n" for k, v in keys.items() if k not in drop) + extra
        write(self.d.config, text)

    @property
    def sock(self):
        return self.d.socket

    def enrol(self):
        rc, out, err = vrotctl(self.sock, "host-enrol", "--ca-cert", self.op.root, "--ca-key",
                               self.op.root_key, "--tpm-vendor-ca", self.vendor_ca)
        check(rc == 0, f"vrotctl host-enrol exited {rc}:\n{err}{out}\n{self.d.log_text()[-3000:]}")
        return out


def verify_chain(h, root, hostca_pem, leaf_pem, tag):
    ca, leaf = write(h.path(tag + "-ca.pem"), hostca_pem), write(h.path(tag + "-leaf.pem"), leaf_pem)
    r = run([require("openssl"), "verify", "-CAfile", root, "-untrusted", ca, leaf])
    check(r.returncode == 0 and r.stdout.decode().strip().endswith(": OK"),
          f"{tag}: openssl verify: {r.stdout.decode()}{r.stderr.decode()}")


def host_ca_file(host):
    return os.path.join(host.d.state_dir, "host", "host-ca.pem")


def check_not_enrolled(host, what):
    info = host.d.call("host.info")
    check(info["enrolled"] is False and info["host_ca_pem"] is None and info["chain_pem"] == [],
          f"{what}: the host is enrolled: {json.dumps(info)[:600]}")
    check(not os.path.exists(host_ca_file(host)), f"{what}: {host_ca_file(host)} was written")


# -- a relay that tampers with what passes ----------------------------------------

class Relay:
    """A UNIX socket between vrotctl and vrotd that passes JSON-RPC lines on,
    through edit(direction, method, object) -> object; records the methods."""

    def __init__(self, h, target, edit):
        self.path = h.path(f"relay{id(self)}.sock")
        self.target, self.edit, self.methods = target, edit, []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(4)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        try:
            conn, _ = self.srv.accept()
        except OSError:
            return
        with conn, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as up:
            up.connect(self.target)
            cin, uin = conn.makefile("rb"), up.makefile("rb")
            for line in cin:
                req = json.loads(line)
                self.methods.append(req["method"])
                up.sendall(json.dumps(self.edit("request", req["method"], req)).encode() + b"\n")
                reply = json.loads(uin.readline())
                conn.sendall(json.dumps(self.edit("reply", req["method"], reply)).encode() + b"\n")

    def close(self):
        self.srv.close()
        self.thread.join(timeout=30)


def other_nonce(direction, method, obj):
    if direction == "request" and method == "host.evidence":
        obj["params"]["nonce"] = base64.b64encode(b"an older nonce").decode()
    return obj


def wrong_secret(direction, method, obj):
    if direction == "reply" and method == "host.activate_credential" and "result" in obj:
        s = bytearray(base64.b64decode(obj["result"]["secret"]))
        s[0] ^= 1
        obj["result"]["secret"] = base64.b64encode(bytes(s)).decode()
    return obj


# -- tests ---------------------------------------------------------------------

def test_enrol_end_to_end():
    with Harness("vrot-enrol") as h:
        host = Host(h)
        d = host.d.start()
        info = d.call("host.info")
        check(info["dev"] is False and info["tcti"] == f"swtpm:path={host.tpm.data}",
              f"host.info: {info}")
        check_not_enrolled(host, "first start")
        check("not enrolled" in d.log_text(), f"no 'not enrolled' warning:\n{d.log_text()[-2000:]}")
        e = expect_error(NOT_ENROLLED, d.call, "instance.create", kind="service", name="early")
        check("vrotctl host-enrol" in e.message, f"the refusal does not say what to do: {e.message}")
        check(d.call("instance.list")["instances"] == [], "a refused create left an instance")
        expect_error(NOT_ENROLLED, d.call, "host.crl")   # no host CA to sign a CRL yet

        # The evidence as the API gives it, checked here with openssl.
        nonce = os.urandom(32)
        ev = d.call("host.evidence", nonce=base64.b64encode(nonce).decode())
        csr = write(h.path("host.csr"), ev["csr_pem"])
        check(b"verify OK" in run([require("openssl"), "req", "-verify", "-noout", "-in", csr])
              .stderr, "the host's CSR does not verify")
        ca_point = tpm2b_public_point(base64.b64decode(ev["evidence"]["ca_public"]))
        csr_pub = openssl("req", "-in", csr, "-pubkey", "-noout")
        check(pubkey_point(openssl("pkey", "-pubin", "-outform", "DER", stdin=csr_pub)) == ca_point,
              "the CSR is not for the certified CA key")
        rc, out, err = vrotctl(d.socket, "host-evidence", "--tpm-vendor-ca", host.vendor_ca)
        check(rc == 0 and "steps 1-5" in out, f"vrotctl host-evidence: {rc}\n{out}{err}")

        t0 = time.monotonic()
        host.enrol()
        print(f"     vrotctl host-enrol: {time.monotonic() - t0:.2f}s", flush=True)
        info = d.call("host.info")
        check(info["enrolled"] is True and info["chain_pem"] == [info["host_ca_pem"],
                                                                  open(host.op.root).read()],
              f"after enrolment: {json.dumps(info)[:800]}")
        check(pubkey_point(cert_pubkey_der(info["host_ca_pem"])) == ca_point,
              "the host CA certificate's key is not the evidence's ca_public")
        verify_chain(h, host.op.root, info["host_ca_pem"], info["host_ca_pem"], "hostca-self")
        for kind in ("service", "vm"):
            inst = d.call("instance.create", kind=kind, name=f"enrolled-{kind}")
            for alg in ("rsa", "ecc"):
                verify_chain(h, host.op.root, info["host_ca_pem"], inst[f"ek_{alg}_cert_pem"],
                             f"{kind}-{alg}")
        d.stop_clean()

        d.start()
        again = d.call("host.info")
        check(again["enrolled"] is True and again["host_ca_pem"] == info["host_ca_pem"],
              f"a restart lost the enrolment: {json.dumps(again)[:600]}")
        inst = d.call("instance.create", kind="service", name="after-restart")
        verify_chain(h, host.op.root, info["host_ca_pem"], inst["ek_rsa_cert_pem"], "restart")
        for dirpath, _, files in os.walk(os.path.join(d.state_dir, "host")):
            for name in files:
                with open(os.path.join(dirpath, name), "rb") as f:
                    check(b"PRIVATE KEY" not in f.read(), f"a private key on the host: {name}")
        d.stop_clean()


def import_refused(host, what, needle, **params):
    e = expect_error(INVALID_PARAMS, host.d.call, "host.import_ca_cert", **params)
    check(needle in e.message, f"{what}: {e.message!r} does not say {needle!r}")
    check_not_enrolled(host, what)


def test_import_refusals():
    with Harness("vrot-enrol-bad") as h:
        host = Host(h)
        d = host.d.start()
        op = host.op
        csr = d.call("host.evidence", nonce=base64.b64encode(b"n" * 32).decode())["csr_pem"]
        ca_exts = ["basicConstraints=critical,CA:TRUE,pathlen:0",
                   "keyUsage=critical,keyCertSign,cRLSign", "subjectKeyIdentifier=hash"]
        other_key = op.path("other.key")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", other_key)
        other_csr = openssl("req", "-new", "-key", other_key, "-subj", "/CN=not the host").decode()
        other_root_key, other_root = op.make_root("other-root", "another fleet")

        import_refused(host, "another key", "another key",
                       pem=op.sign_csr(other_csr, "for-other-key", ca_exts))
        import_refused(host, "another root", "does not chain to the configured fleet root",
                       pem=op.sign_csr(csr, "other-root-cert", ca_exts, other_root, other_root_key))
        import_refused(host, "not a CA", "not a CA certificate",
                       pem=op.sign_csr(csr, "not-ca", ["basicConstraints=critical,CA:FALSE",
                                                       "keyUsage=critical,digitalSignature"]))
        import_refused(host, "no keyCertSign", "keyCertSign",
                       pem=op.sign_csr(csr, "no-certsign", ["basicConstraints=critical,CA:TRUE",
                                                            "keyUsage=critical,cRLSign"]))
        good = op.sign_csr(csr, "good", ca_exts)
        import_refused(host, "garbage", "the certificate", pem="-----BEGIN CERTIFICATE-----\nAA\n")
        import_refused(host, "garbage chain", "the chain", pem=good, chain_pem="no PEM here")
        expect_error(INVALID_PARAMS, d.call, "host.import_ca_cert", pem=good, chains="x")
        expect_error(INVALID_PARAMS, d.call, "host.evidence", nonce="not base64!")
        expect_error(INVALID_PARAMS, d.call, "host.evidence", nonce=base64.b64encode(b"x" * 65)
                     .decode())
        expect_error(INVALID_PARAMS, d.call, "host.evidence")
        # A TPM2B whose size says 10 bytes and holds 2: refused before the TPM.
        expect_error(INVALID_PARAMS, d.call, "host.activate_credential", id_object="AAoBAg==",
                     encrypted_secret="AAoBAg==")
        expect_error(INVALID_PARAMS, d.call, "host.activate_credential", id_object="AAEC")
        for method, params in (("host.evidence", {"nonce": "AAAA"}),
                               ("host.activate_credential", {"id_object": "AAAA",
                                                             "encrypted_secret": "AAAA"}),
                               ("host.import_ca_cert", {"pem": good})):
            expect_error(PERMISSION_DENIED, as_user, NOBODY, NOBODY,
                         lambda m=method, p=params: host.d.connect().call(m, **p))
        check_not_enrolled(host, "after the refusals")
        # What passed every check is accepted, at once.
        res = d.call("host.import_ca_cert", pem=good)
        check(res["enrolled"] is True and d.call("host.info")["enrolled"] is True,
              f"the good certificate was not taken: {res}")
        d.call("instance.create", kind="service", name="after-import")
        d.stop_clean()


def enrol_refused(host, sock, what, needle, vendor=None):
    rc, out, err = vrotctl(sock, "host-enrol", "--ca-cert", host.op.root, "--ca-key",
                           host.op.root_key, "--tpm-vendor-ca", vendor or host.vendor_ca)
    check(rc == 1, f"{what}: vrotctl host-enrol exited {rc}, expected 1:\n{out}{err}")
    check(needle in err and "nothing signed" in err and err.count("\n") == 1,
          f"{what}: stderr is not one line saying {needle!r} and 'nothing signed': {err!r}")
    check("BEGIN CERTIFICATE" not in out, f"{what}: vrotctl printed a certificate:\n{out}")
    check_not_enrolled(host, what)


def test_ca_side_refusals():
    with Harness("vrot-enrol-ca") as h:
        host = Host(h)
        d = host.d.start()
        for what, edit, needle in (("replaced nonce", other_nonce, "not for this nonce"),
                                   ("wrong credential answer", wrong_secret, "not the secret")):
            relay = Relay(h, d.socket, edit)
            try:
                enrol_refused(host, relay.path, what, needle)
            finally:
                relay.close()
            check("host.import_ca_cert" not in relay.methods,
                  f"{what}: vrotctl sent a certificate: {relay.methods}")
        enrol_refused(host, d.socket, "the wrong TPM vendor", "step 1", vendor=host.op.root)
        rc, out, err = vrotctl(d.socket, "host-enrol", "--ca-cert", host.op.root)
        check(rc == 2 and "--ca-key is required" in err, f"usage error: {rc} {err!r}")
        rc, out, err = vrotctl(d.socket, "host-enrol", "--ca-cert", host.op.root, "--ca-key",
                               host.op.path("policy.key"), "--tpm-vendor-ca", host.vendor_ca)
        check(rc == 1 and "not the issuer certificate's key" in err,
              f"a CA key that is not the CA's: {rc} {err!r}")
        check_not_enrolled(host, "after the CA-side refusals")
        host.enrol()
        check(d.call("host.info")["enrolled"] is True, "the honest enrolment failed")
        d.stop_clean()


def start_refused(host, needle, drop=(), extra="", **override):
    """vrotd must exit non-zero at once, naming the configuration key."""
    host.write_conf(drop=drop, extra=extra, **override)
    proc = host.h.spawn(host.d.argv(), log=host.h.path("refused.log"))
    try:
        rc = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        raise Failure(f"vrotd kept running with a bad [operator] ({needle})") from None
    with open(host.h.path("refused.log"), errors="replace") as f:
        log = f.read()
    check(rc != 0 and needle in log, f"vrotd exited {rc}; its message lacks {needle!r}:\n"
          f"{log[-1500:]}")
    sealed = os.path.join(host.d.state_dir, "host", "sealing", "master.sealed")
    check(not os.path.exists(sealed), f"a refused start provisioned {sealed}")


def test_operator_config_refused():
    with Harness("vrot-enrol-conf") as h:
        host = Host(h)
        op = host.op
        start_refused(host, "[operator] policy-key is not set", drop=("policy-key",))
        start_refused(host, "[operator] recovery-key is not set", drop=("recovery-key",))
        start_refused(host, "[operator] fleet-root is not set", drop=("fleet-root",))
        start_refused(host, "[operator] policy-key: ", policy_key=op.path("nonexistent.pem"))
        start_refused(host, "[operator] policy-key: ", policy_key=op.path("recovery.pub.pem"))
        start_refused(host, "holds a private key", policy_key=op.path("policy.key"))
        start_refused(host, "[operator] recovery-key: ", recovery_key=op.path("policy.pub.pem"))
        start_refused(host, "[operator] fleet-root: ", fleet_root=op.path("policy.pub.pem"))
        start_refused(host, "unknown key [operator] policy_key", extra=f"policy_key={op.root}\n")
        check(not adopted({p.pid for p in h.procs if p.returncode is None}),
              "a refused vrotd left a process behind")
        # The same configuration, corrected, starts.
        host.write_conf()
        host.d.start()
        check(host.d.call("host.info")["enrolled"] is False, "unexpectedly enrolled")
        host.d.stop_clean()


if __name__ == "__main__":
    main([test_enrol_end_to_end, test_import_refusals, test_ca_side_refusals,
          test_operator_config_refused])
