"""vrot-tlspeer (tests/tools/tlspeer.c) on both ends of a TLS 1.3
connection with mutual authentication, each private key inside its own vTPM:
for test_identity.py and the demo.

A side is a dict: "data" (the vTPM's data socket), "handle" (the identity
key's persistent handle), "fullchain" (PEM: the identity's certificate, then
the host CA's) and "root" (the fleet root, PEM).
"""

import os
import subprocess

import harness


def binary():
    path = os.environ.get("VROT_TLSPEER") or os.path.join(harness.TOP, "build", "tests", "tools",
                                                          "vrot-tlspeer")
    if not os.access(path, os.X_OK):
        raise harness.Failure(f"vrot-tlspeer not found at {path}: build first or set VROT_TLSPEER")
    return path


def peer_args(f, crl=None):
    return ["--tcti", f"swtpm:path={f['data']}", "--handle", f["handle"],
            "--chain", f["fullchain"], "--root", f["root"]] + (["--crl", crl] if crl else [])


def handshake(h, server, client, crl=None):
    """vrot-tlspeer as server (its key in its vTPM) and as client (its key in
    its own vTPM): TLS 1.3, each side requiring and verifying the other's
    chain to the fleet root (and with @crl, checking the peer against it).
    Returns (ok, server output, client output)."""
    srv = subprocess.Popen([binary(), "--listen", "0", *peer_args(server, crl),
                            "--message", "hello from the server"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    h.procs.append(srv)
    try:
        first = srv.stdout.readline().decode(errors="replace")
        if not first.startswith("listening "):
            return False, first + srv.communicate(timeout=30)[0].decode(errors="replace"), ""
        cli = subprocess.run([binary(), "--connect", first.split()[1],
                              *peer_args(client, crl), "--message", "hello from the client"],
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        cli_out = (cli.stdout + cli.stderr).decode(errors="replace")
        srv_out = first + srv.communicate(timeout=30)[0].decode(errors="replace")
        ok = (cli.returncode == 0 and srv.returncode == 0
              and "received: hello from the server" in cli_out
              and "received: hello from the client" in srv_out
              and "TLSv1.3" in cli_out and "TLSv1.3" in srv_out)
        return ok, srv_out, cli_out
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
