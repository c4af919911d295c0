"""Raw TPM 2.0 commands for the integration tests (TPM 2.0 Part 3).

Built with struct, independently of vrot's C code, so the tests check the
worker against the specification rather than against itself.
"""

import struct
import time

from harness import check, transact

# -- NV commands (sections 31.3, 31.7, 31.13) ----------------------------------

TPM2_ST_SESSIONS = 0x8002
TPM2_CC_NV_DEFINE_SPACE = 0x12A
TPM2_CC_NV_WRITE = 0x137
TPM2_CC_NV_READ = 0x14E
TPM_RH_OWNER = 0x40000001
TPM_RS_PW = 0x40000009
TPM_ALG_SHA256 = 0x000B
TPMA_NV_OWNERWRITE = 1 << 1
TPMA_NV_OWNERREAD = 1 << 17
TPMA_NV_NO_DA = 1 << 25
TPM_RC_RETRY = 0x922
TPM_RC_YIELDED = 0x908
TPM_RC_TESTING = 0x90A

# An empty password session: handle, nonce (empty), attributes (continue), hmac (empty).
PW_SESSION = struct.pack(">IHBH", TPM_RS_PW, 0, 1, 0)


def session_cmd(cc, handles, params):
    """A command with handles, one password authorization and parameters."""
    body = b"".join(struct.pack(">I", h) for h in handles)
    body += struct.pack(">I", len(PW_SESSION)) + PW_SESSION + params
    return struct.pack(">HII", TPM2_ST_SESSIONS, 10 + len(body), cc) + body


def nv_define_cmd(index, size, attrs=TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD | TPMA_NV_NO_DA):
    public = struct.pack(">IHIHH", index, TPM_ALG_SHA256, attrs, 0, size)
    params = struct.pack(">H", 0) + struct.pack(">H", len(public)) + public
    return session_cmd(TPM2_CC_NV_DEFINE_SPACE, (TPM_RH_OWNER,), params)


def nv_write_cmd(index, data, offset=0):
    params = struct.pack(">H", len(data)) + data + struct.pack(">H", offset)
    return session_cmd(TPM2_CC_NV_WRITE, (TPM_RH_OWNER, index), params)


def nv_read_cmd(index, size, offset=0):
    return session_cmd(TPM2_CC_NV_READ, (TPM_RH_OWNER, index), struct.pack(">HH", size, offset))


def checked(sock, cmd, what):
    """Send a command, retrying the TPM's transient answers; return the response."""
    for _ in range(50):
        rc, resp = transact(sock, cmd)
        if rc not in (TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING):
            break
        time.sleep(0.01)
    check(rc == 0, f"{what}: TPM response code 0x{rc:x}")
    return resp


def nv_define(sock, index, size):
    checked(sock, nv_define_cmd(index, size), f"NV_DefineSpace 0x{index:x}")


def nv_write(sock, index, data, offset=0):
    checked(sock, nv_write_cmd(index, data, offset), f"NV_Write 0x{index:x}")


def nv_read(sock, index, size, offset=0):
    resp = checked(sock, nv_read_cmd(index, size, offset), f"NV_Read 0x{index:x}")
    # header, parameterSize, TPM2B_MAX_NV_BUFFER, session response
    (n,) = struct.unpack(">H", resp[14:16])
    check(n == size, f"NV_Read 0x{index:x}: {n} bytes, asked for {size}")
    return resp[16:16 + n]


# -- the sealed files' plaintext header (lib/seal.h) --------------------------

def header_generation(path):
    """Generation field of a sealed file's header, or None if absent/short."""
    try:
        with open(path, "rb") as f:
            hdr = f.read(36)
    except FileNotFoundError:
        return None
    if len(hdr) < 36 or hdr[:4] != b"VRTS":
        return None
    return struct.unpack(">Q", hdr[28:36])[0]


