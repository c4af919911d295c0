"""A VM's vTPM as its guest sees it, for tpm2-tools run by a test.

    with GuestTpm(h, info["ctrl"]) as g:
        g.tools("tpm2_startup", "-c")
        out = g.tools("tpm2_readpublic", "-c", "0x81010001").stdout

A VM instance's worker has no data socket of its own: QEMU opens its
control socket, sends CMD_INIT and hands over the data channel with
CMD_SET_DATAFD, once.  GuestTpm does the same, then serves tpm2-tools (TCTI
swtpm:path=SOCK) on a socket of its own in the test's directory, relaying
each TPM command to the data channel and its response back, one tool at a
time, as the guest's TPM driver would.  The swtpm TCTI also opens SOCK.ctrl
to set the locality; those requests go to the worker's control socket.
Only SET_LOCALITY is relayed: a guest cannot send anything else there.
"""

import os
import socket
import struct
import subprocess
import threading

import ptm
from harness import check

TPM_HEADER = 10

# What docs/identity.md has the guest use: the EK at its TCG default handle,
# the AK and identity keys as children of it.
EK = "0x81010001"
AK_ATTRS = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign"
KEY_ATTRS = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign"
AK_ALG = "ecc256:ecdsa-sha256:null"
KEY_ALG = "ecc256:null"


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def recv_tpm(sock):
    """One TPM 2.0 command or response (header size field), or None at EOF."""
    header = recv_exact(sock, TPM_HEADER)
    if header is None:
        return None
    size = struct.unpack(">I", header[2:6])[0]
    body = recv_exact(sock, size - TPM_HEADER) if size > TPM_HEADER else b""
    return None if body is None else header + body


class GuestTpm:
    def __init__(self, h, ctrl_path, name="guest-tpm", incoming=None):
        """@incoming: stateblobs {type: (data, flags)} to load first, as
        QEMU's destination of a live migration does (STOP, SET_STATEBLOB
        each, then INIT, which resumes the volatile state)."""
        self.h = h
        self.ctrl = ptm.Ctrl(ctrl_path)
        if incoming:
            check(self.ctrl.stop().result == ptm.TPM_SUCCESS, "CMD_STOP of the incoming vTPM")
            for btype, (data, flags) in sorted(incoming.items()):
                r = self.ctrl.set_stateblob(btype, data, flags=flags)
                check(r.result == ptm.TPM_SUCCESS, f"SET_STATEBLOB {btype}: {r}")
        check(self.ctrl.init().result == ptm.TPM_SUCCESS, "CMD_INIT of the VM's vTPM")
        self.data, theirs = socket.socketpair()
        try:
            r = self.ctrl.set_datafd(theirs)
            check(r.result == ptm.TPM_SUCCESS, f"CMD_SET_DATAFD: {r}")
        finally:
            theirs.close()
        self.path = h.path(f"{name}.sock")
        self.listeners = []
        for path, serve in ((self.path, self.serve_data), (self.path + ".ctrl", self.serve_ctrl)):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.listen(1)
            self.listeners.append(s)
            threading.Thread(target=self.accept_loop, args=(s, serve), daemon=True).start()
        self.env = dict(os.environ, TPM2TOOLS_TCTI=f"swtpm:path={self.path}",
                        TSS2_LOG="all+none")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        for s in self.listeners:
            s.close()
        self.data.close()
        self.ctrl.close()

    @staticmethod
    def accept_loop(listener, serve):
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:
                    serve(conn)
                except OSError:
                    pass

    def serve_data(self, conn):
        while (command := recv_tpm(conn)) is not None:
            self.data.sendall(command)
            response = recv_tpm(self.data)
            if response is None:
                return
            conn.sendall(response)

    def serve_ctrl(self, conn):
        cmd = recv_exact(conn, 4)
        if cmd is not None and struct.unpack(">I", cmd)[0] == ptm.CMD_SET_LOCALITY:
            loc = recv_exact(conn, 1)
            if loc is not None:
                conn.sendall(self.ctrl.set_locality(loc[0]).raw)
                return
        conn.sendall(struct.pack(">I", ptm.TPM_BAD_ORDINAL))

    def tools(self, *argv, ok=True, timeout=60):
        """Runs one tpm2-tools command in the test's directory against the
        guest's TPM; with @ok, a failure fails the test."""
        r = subprocess.run(list(argv), env=self.env, cwd=self.h.dir, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=timeout)
        if ok:
            check(r.returncode == 0, f"{' '.join(argv)}: {r.stderr.decode(errors='replace')}")
        return r

    def under_ek(self, *argv, ok=True):
        """One tpm2-tools command that uses the EK, through the EK's policy
        (PolicySecret(TPM_RH_ENDORSEMENT), TCG EK Credential Profile)."""
        self.tools("tpm2_startauthsession", "--policy-session", "-S", "ek-session.ctx")
        self.tools("tpm2_policysecret", "-S", "ek-session.ctx", "-c", "e")
        try:
            return self.tools(*argv, "-P", "session:ek-session.ctx", ok=ok)
        finally:
            self.tools("tpm2_flushcontext", "ek-session.ctx")

    def make_key(self, prefix, attrs, alg, handle=None):
        """A key under the EK: @prefix.pub (TPM2B_PUBLIC, returned) and, with
        @handle, persistent there."""
        self.under_ek("tpm2_create", "-C", EK, "-G", alg, "-a", attrs, "-u", f"{prefix}.pub",
                      "-r", f"{prefix}.priv")
        if handle:
            self.under_ek("tpm2_load", "-C", EK, "-u", f"{prefix}.pub", "-r", f"{prefix}.priv",
                          "-c", f"{prefix}.ctx")
            self.tools("tpm2_evictcontrol", "-C", "o", "-c", f"{prefix}.ctx", handle)
            self.tools("tpm2_flushcontext", "-t")
        return self.read(f"{prefix}.pub")

    def activate(self, id_object, encrypted_secret, ak, ok=True):
        """tpm2_activatecredential of a credential (the two structures) with
        the AK at @ak and the EK; the secret, or None if the TPM refused."""
        with open(self.h.path("credential"), "wb") as f:   # tpm2-tools' credential file
            f.write(bytes.fromhex("badcc0de00000001") + id_object + encrypted_secret)
        r = self.under_ek("tpm2_activatecredential", "-c", ak, "-C", EK, "-i", "credential",
                          "-o", "secret", ok=ok)
        return self.read("secret") if r.returncode == 0 else None

    def read(self, name):
        with open(self.h.path(name), "rb") as f:
            return f.read()
