"""A small, independent client for the swtpm control channel ("ptm" protocol).

Written from swtpm 0.7.1's include/swtpm/tpm_ioctl.h and src/swtpm/ctrlchannel.c
(read, not copied), for the differential test test_ctrl_diff.py.  It is the
client side only and deliberately simple: struct.pack on one side, exact reads
on the other, so that every byte a server sends is visible to the test.

Wire format, as verified in the swtpm source
--------------------------------------------
Every field is big-endian.  A request is ``u32 cmd`` followed by the command's
request body (the ``u.req`` part of the ioctl structure, see each function);
the answer is the ``u.resp`` part only, which always starts with
``u32 result`` (a TPM 1.2 style TPM_RESULT), except GET_CAPABILITY.

The server reads one request with a single recvmsg() plus, for the commands
whose size it knows (INIT, SET_LOCALITY, HASH_DATA, RESET_TPMESTABLISHED,
GET_STATEBLOB, SET_STATEBLOB), further reads until the request is complete,
for at most 500 ms in total.  Commands it does not size (GET_INFO,
SET_BUFFERSIZE, all body-less ones) are taken from whatever the first recvmsg
returned, so such a request must go out in one write: every function here
sends command code and body with one sendall() (set_stateblob, like QEMU,
sends its 16-byte header first and the data after it; SET_STATEBLOB is
sized).  Conversely everything that first recvmsg returned counts as one
request: swtpm does not frame a stream of pipelined requests.

Error answers that do not depend on the command are exactly 4 bytes:

  - ``TPM_BAD_ORDINAL`` (0x0a): unknown command, and also "TPM not running"
    (GET_TPMESTABLISHED, RESET_TPMESTABLISHED, HASH_*, CANCEL, STORE_VOLATILE,
    GET_STATEBLOB before INIT or after STOP) and "TPM running" (SET_STATEBLOB,
    SET_BUFFERSIZE with a non-zero size while running).
  - ``TPM_BAD_PARAMETER`` (0x03): the request that arrived has the wrong
    size (INIT not exactly 4 body bytes, a body on a body-less command, too
    few bytes for GET_INFO / SET_BUFFERSIZE / SET_DATAFD).  A *sized*
    request that stays incomplete gets no answer: after 500 ms swtpm closes
    the connection (its poll() times out in ctrlchannel_recv_cmd).
  - ``TPM_IOERROR`` (0x1f): SET_DATAFD when a data fd is already in use.
  - ``TPM_SIZE`` (0x17): GET_INFO could not get the string from libtpms.

Only one control connection is served at a time (swtpm stops polling its
listening socket while it has a client), so close one Ctrl before opening the
next on the same server.
"""

import errno
import select
import socket
import struct
import time

# -- commands (tpm_ioctl.h, "Commands used by the non-CUSE TPMs") ----------
CMD_GET_CAPABILITY = 0x01
CMD_INIT = 0x02
CMD_SHUTDOWN = 0x03
CMD_GET_TPMESTABLISHED = 0x04
CMD_SET_LOCALITY = 0x05
CMD_HASH_START = 0x06
CMD_HASH_DATA = 0x07
CMD_HASH_END = 0x08
CMD_CANCEL_TPM_CMD = 0x09
CMD_STORE_VOLATILE = 0x0A
CMD_RESET_TPMESTABLISHED = 0x0B
CMD_GET_STATEBLOB = 0x0C
CMD_SET_STATEBLOB = 0x0D
CMD_STOP = 0x0E
CMD_GET_CONFIG = 0x0F
CMD_SET_DATAFD = 0x10
CMD_SET_BUFFERSIZE = 0x11
CMD_GET_INFO = 0x12
CMD_LOCK_STORAGE = 0x13  # newer swtpm (0.8+) and vrot; 0.7.1 answers BAD_ORDINAL

# -- result codes (libtpms tpm_error.h, TPM 1.2 numbering) -------------------
TPM_SUCCESS = 0x00
TPM_BAD_PARAMETER = 0x03
TPM_FAIL = 0x09
TPM_BAD_ORDINAL = 0x0A
TPM_SIZE = 0x17
TPM_IOERROR = 0x1F
TPM_BAD_LOCALITY = 0x3D
TPM_RETRY = 0x800

# -- flags ------------------------------------------------------------------
INIT_FLAG_DELETE_VOLATILE = 1
BLOB_TYPE_PERMANENT = 1
BLOB_TYPE_VOLATILE = 2
BLOB_TYPE_SAVESTATE = 3
STATE_FLAG_DECRYPTED = 1   # request: hand out the blob decrypted
STATE_FLAG_ENCRYPTED = 2   # answer / SET request: the blob is encrypted
CONFIG_FLAG_FILE_KEY = 1
CONFIG_FLAG_MIGRATION_KEY = 2
INFO_TPMSPECIFICATION = 1
INFO_TPMATTRIBUTES = 2

# capability bits of GET_CAPABILITY
CAP_INIT = 1 << 0
CAP_SHUTDOWN = 1 << 1
CAP_GET_TPMESTABLISHED = 1 << 2
CAP_SET_LOCALITY = 1 << 3
CAP_HASHING = 1 << 4
CAP_CANCEL_TPM_CMD = 1 << 5
CAP_STORE_VOLATILE = 1 << 6
CAP_RESET_TPMESTABLISHED = 1 << 7
CAP_GET_STATEBLOB = 1 << 8
CAP_SET_STATEBLOB = 1 << 9
CAP_STOP = 1 << 10
CAP_GET_CONFIG = 1 << 11
CAP_SET_DATAFD = 1 << 12
CAP_SET_BUFFERSIZE = 1 << 13
CAP_GET_INFO = 1 << 14
CAP_SEND_COMMAND_HEADER = 1 << 15
CAP_LOCK_STORAGE = 1 << 16

# the 12-byte header of a SET_STATEBLOB request / 16-byte GET_STATEBLOB answer
SETSTATE_HDR = 12
GETSTATE_HDR = 16

DEFAULT_TIMEOUT = 5.0
# how long to wait for bytes that may follow an error result; longer than the
# time any server needs to write one answer, shorter than any of its timeouts
SETTLE = 0.2


class ProtocolError(AssertionError):
    """The server sent something the protocol does not allow (or closed)."""


class Reply:
    """One answer: the raw bytes, the result code, and parsed fields.

    ``extra`` holds bytes that arrived after the answer was complete (a
    conforming server sends none); tests compare it between servers.
    """

    def __init__(self, raw, result, extra=b"", **fields):
        self.raw, self.result, self.extra = raw, result, extra
        self.fields = fields
        for k, v in fields.items():
            setattr(self, k, v)

    def __repr__(self):
        f = " ".join(f"{k}={v!r}" for k, v in self.fields.items())
        return f"<Reply result=0x{self.result:x} raw={self.raw.hex()} {f} extra={self.extra.hex()}>"


class Ctrl:
    """One control-channel connection (UNIX stream socket)."""

    def __init__(self, path, timeout=DEFAULT_TIMEOUT):
        self.path = path
        self.timeout = timeout
        self.sock = connect_unix(path, timeout)
        self.last_closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # -- low level --------------------------------------------------------

    def _send(self, cmd, body=b"", fds=None):
        msg = struct.pack(">I", cmd) + body
        if fds:
            n = socket.send_fds(self.sock, [msg], list(fds))
            if n != len(msg):
                self.sock.sendall(msg[n:])
        else:
            self.sock.sendall(msg)

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except socket.timeout:
                raise ProtocolError(f"timeout after {len(buf)} of {n} bytes "
                                    f"(waited {self.timeout}s)") from None
            if not chunk:
                self.last_closed = True
                raise ProtocolError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return buf

    def _drain(self, settle=SETTLE):
        """Return whatever arrives within ``settle`` seconds of quiet."""
        buf = b""
        while True:
            r, _, _ = select.select([self.sock], [], [], settle)
            if not r:
                return buf
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.last_closed = True
                return buf
            buf += chunk

    def _pending(self):
        """Bytes already queued after an answer (no waiting beyond a tick)."""
        return self._drain(settle=0.02)

    def _simple(self, cmd, body=b"", ok_len=4, fds=None):
        """Send; read u32 result, then ok_len-4 more bytes if result is 0.

        After an error result the server sends nothing more (4-byte error
        answers); whatever it does send anyway lands in Reply.extra.
        """
        self._send(cmd, body, fds)
        head = self._recv_exact(4)
        (result,) = struct.unpack(">I", head)
        if result == 0 and ok_len > 4:
            rest = self._recv_exact(ok_len - 4)
            return head + rest, result, self._pending()
        return head, result, self._drain() if result else self._pending()

    # -- commands -----------------------------------------------------------

    def get_capability(self):
        """CMD_GET_CAPABILITY (0x01).

        Request: ``u32 cmd`` (any extra bytes are ignored by swtpm).
        Answer: 8 bytes, the ``u64`` capability mask (ptm_cap) with no result
        field; read as ``u32 0, u32 caps`` the first word doubles as a result
        of 0.  swtpm 0.7.1 with --tpm2: 0x000000000000ffff.
        """
        self._send(CMD_GET_CAPABILITY)
        raw = self._recv_exact(8)
        (caps,) = struct.unpack(">Q", raw)
        return Reply(raw, caps >> 32, self._pending(), caps=caps)

    def init(self, flags=0):
        """CMD_INIT (0x02): (re)start the TPM, reading state from storage.

        Request: ``u32 cmd, u32 init_flags`` (bit 0 DELETE_VOLATILE: delete
        the volatile state after reading it).  The body must be exactly 4
        bytes, else TPM_BAD_PARAMETER.  A running TPM is terminated first.
        Answer: ``u32 result`` (libtpms' TPMLIB_MainInit result).
        """
        raw, res, extra = self._simple(CMD_INIT, struct.pack(">I", flags))
        return Reply(raw, res, extra)

    def shutdown(self):
        """CMD_SHUTDOWN (0x03): stop the TPM and end the process.

        Request: ``u32 cmd`` (no body, else TPM_BAD_PARAMETER).
        Answer: ``u32 result`` = 0, then the server exits.
        """
        raw, res, extra = self._simple(CMD_SHUTDOWN)
        return Reply(raw, res, extra)

    def stop(self):
        """CMD_STOP (0x0e): terminate the TPM, keep the process.

        Request: ``u32 cmd`` (no body).  Answer: ``u32 result`` = 0.
        """
        raw, res, extra = self._simple(CMD_STOP)
        return Reply(raw, res, extra)

    def get_tpmestablished(self):
        """CMD_GET_TPMESTABLISHED (0x04).

        Request: ``u32 cmd`` (no body).
        Answer (struct ptm_est, padded): ``u32 result, u8 bit, u8 pad[3]`` = 8
        bytes, the pad zeroed; only ``u32 result`` when not running.
        """
        raw, res, extra = self._simple(CMD_GET_TPMESTABLISHED, ok_len=8)
        return Reply(raw, res, extra, bit=raw[4] if res == 0 else None)

    def reset_tpmestablished(self, loc):
        """CMD_RESET_TPMESTABLISHED (0x0b).

        Request: ``u32 cmd, u8 locality``; the reset is done as if at that
        locality.  Locality > 4 gives TPM_BAD_LOCALITY (0x3d).
        Answer: ``u32 result``.
        """
        raw, res, extra = self._simple(CMD_RESET_TPMESTABLISHED, struct.pack(">B", loc))
        return Reply(raw, res, extra)

    def set_locality(self, loc):
        """CMD_SET_LOCALITY (0x05): locality for following data-channel commands.

        Request: ``u32 cmd, u8 locality``.  > 4 gives TPM_BAD_LOCALITY (0x3d);
        works whether or not the TPM runs.  Answer: ``u32 result``.
        """
        raw, res, extra = self._simple(CMD_SET_LOCALITY, struct.pack(">B", loc))
        return Reply(raw, res, extra)

    def hash_start(self):
        """CMD_HASH_START (0x06): _TPM_Hash_Start.  ``u32 cmd`` -> ``u32 result``."""
        raw, res, extra = self._simple(CMD_HASH_START)
        return Reply(raw, res, extra)

    def hash_data(self, data):
        """CMD_HASH_DATA (0x07): _TPM_Hash_Data.

        Request: ``u32 cmd, u32 length, u8 data[length]``.
        Answer: ``u32 result``.
        """
        raw, res, extra = self._simple(CMD_HASH_DATA, struct.pack(">I", len(data)) + data)
        return Reply(raw, res, extra)

    def hash_end(self):
        """CMD_HASH_END (0x08): _TPM_Hash_End.  ``u32 cmd`` -> ``u32 result``."""
        raw, res, extra = self._simple(CMD_HASH_END)
        return Reply(raw, res, extra)

    def cancel(self):
        """CMD_CANCEL_TPM_CMD (0x09).  ``u32 cmd`` -> ``u32 result``."""
        raw, res, extra = self._simple(CMD_CANCEL_TPM_CMD)
        return Reply(raw, res, extra)

    def store_volatile(self):
        """CMD_STORE_VOLATILE (0x0a): write the volatile state to storage.

        ``u32 cmd`` -> ``u32 result``.
        """
        raw, res, extra = self._simple(CMD_STORE_VOLATILE)
        return Reply(raw, res, extra)

    def get_config(self):
        """CMD_GET_CONFIG (0x0f).

        Request: ``u32 cmd`` (no body).
        Answer: ``u32 result, u32 flags``; flags bit 0 FILE_KEY (state files
        are encrypted with a key), bit 1 MIGRATION_KEY (state blobs handed
        out are encrypted with a migration key).
        """
        raw, res, extra = self._simple(CMD_GET_CONFIG, ok_len=8)
        flags = struct.unpack(">I", raw[4:8])[0] if res == 0 else None
        return Reply(raw, res, extra, flags=flags)

    def set_datafd(self, sock):
        """CMD_SET_DATAFD (0x10): hand over the data channel.

        Request: ``u32 cmd`` with one fd in an SCM_RIGHTS control message
        (``sock`` is a socket or an fd; the caller keeps its copy).  No fd:
        TPM_BAD_PARAMETER; a data fd already set: TPM_IOERROR (0x1f).
        Answer: ``u32 result``.
        """
        fd = sock if isinstance(sock, int) else sock.fileno()
        raw, res, extra = self._simple(CMD_SET_DATAFD, fds=[fd])
        return Reply(raw, res, extra)

    def set_buffersize(self, n):
        """CMD_SET_BUFFERSIZE (0x11).

        Request: ``u32 cmd, u32 buffersize`` (0 queries).  A non-zero size
        while the TPM runs gives TPM_BAD_ORDINAL.
        Answer: ``u32 result, u32 buffersize, u32 minsize, u32 maxsize``;
        the size is clamped to [min, max] by libtpms.
        """
        raw, res, extra = self._simple(CMD_SET_BUFFERSIZE, struct.pack(">I", n), ok_len=16)
        if res == 0:
            size, mn, mx = struct.unpack(">III", raw[4:16])
            return Reply(raw, res, extra, buffersize=size, minsize=mn, maxsize=mx)
        return Reply(raw, res, extra)

    def get_info(self, flags, offset=0):
        """CMD_GET_INFO (0x12): libtpms' TPMLIB_GetInfo(flags) JSON string.

        Request: ``u32 cmd, u64 flags, u32 offset, u32 pad``.
        Answer: ``u32 result, u32 totlength, u32 length, char buffer[length]``
        where totlength = strlen + 1 and buffer is the string from ``offset``
        including its NUL (at most 3072 bytes).  offset >= strlen gives
        TPM_BAD_PARAMETER.
        """
        body = struct.pack(">QII", flags, offset, 0)
        self._send(CMD_GET_INFO, body)
        head = self._recv_exact(4)
        (res,) = struct.unpack(">I", head)
        if res:
            return Reply(head, res, self._drain())
        hdr = self._recv_exact(8)
        tot, length = struct.unpack(">II", hdr)
        data = self._recv_exact(length)
        return Reply(head + hdr + data, res, self._pending(),
                     totlength=tot, length=length, data=data)

    def get_stateblob(self, btype, flags=STATE_FLAG_DECRYPTED, offset=0):
        """CMD_GET_STATEBLOB (0x0c).

        Request: ``u32 cmd, u32 state_flags, u32 type, u32 offset``.
        Answer, once the TPM runs and the request is well formed: a 16-byte
        header ``u32 result, u32 state_flags, u32 totlength, u32 length``
        (totlength == length == blob size - offset; both 0 on error), then
        ``length`` data bytes when result is 0.  swtpm answers all bytes at
        once; the 3 KiB PTM_STATE_BLOB_SIZE chunking is CUSE only.
        Not running / bad size: the 4-byte error answer only.
        The savestate blob of a running TPM 2.0 is TPM_RETRY (0x800).
        """
        self._send(CMD_GET_STATEBLOB, struct.pack(">III", flags, btype, offset))
        head = self._recv_exact(4)
        (res,) = struct.unpack(">I", head)
        rest = self._drain() if res else self._recv_exact(12)
        if len(rest) < 12:
            # a 4-byte answer: not running or malformed
            return Reply(head, res, rest)
        sflags, tot, length = struct.unpack(">III", rest[:12])
        data = b""
        if res == 0:
            data = self._recv_exact(length)
            extra = self._pending()
        else:
            extra = rest[12:]
        return Reply(head + rest[:12] + data, res, extra, state_flags=sflags,
                     totlength=tot, length=length, data=data)

    def set_stateblob(self, btype, data, flags=0, chunk=4096, length=None,
                      split_header=True):
        """CMD_SET_STATEBLOB (0x0d); only while the TPM is stopped.

        Request: ``u32 cmd, u32 state_flags, u32 type, u32 length`` then
        ``length`` data bytes (state_flags bit 1 ENCRYPTED).  With
        ``split_header`` (QEMU's way) the 16-byte header goes alone, then the
        data in ``chunk``-sized writes; otherwise the first chunk rides with
        the header.  The server reads on until ``length`` bytes are in (the
        first 4 KiB within its 500 ms window).  More bytes than announced in
        the first read: TPM_BAD_PARAMETER; a close before all arrived: no
        answer (within the window) or TPM_BAD_PARAMETER (after it).
        ``length`` overrides the announced length (malformed cases).
        Answer: ``u32 result``.
        """
        length = len(data) if length is None else length
        hdr = struct.pack(">IIII", CMD_SET_STATEBLOB, flags, btype, length)
        first = 0 if split_header else chunk
        self.sock.sendall(hdr + data[:first])
        for off in range(first, len(data), chunk):
            self.sock.sendall(data[off:off + chunk])
        head = self._recv_exact(4)
        (res,) = struct.unpack(">I", head)
        return Reply(head, res, self._drain() if res else self._pending())

    def lock_storage(self, retries):
        """CMD_LOCK_STORAGE (0x13), swtpm >= 0.8 / vrot.

        Request: ``u32 cmd, u32 retries``.  Answer: ``u32 result``.
        swtpm 0.7.1 does not know it: TPM_BAD_ORDINAL.
        """
        raw, res, extra = self._simple(CMD_LOCK_STORAGE, struct.pack(">I", retries))
        return Reply(raw, res, extra)

    def raw(self, data, fds=None, wait=2.0, quiet=SETTLE, halfclose=False):
        """Send raw bytes; return what comes back, or None if nothing does.

        Waits up to ``wait`` seconds for the first byte (longer than the
        server's 500 ms read window), then until ``quiet`` seconds pass with
        nothing new.  ``halfclose`` shuts the write side down after sending.
        ``self.last_closed`` tells whether the server closed the connection.
        """
        self.last_closed = False
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        elif data:
            self.sock.sendall(data)
        if halfclose:
            self.sock.shutdown(socket.SHUT_WR)
        r, _, _ = select.select([self.sock], [], [], wait)
        if not r:
            return None
        try:
            first = self.sock.recv(65536)
        except OSError as e:
            if e.errno not in (errno.ECONNRESET, errno.EPIPE):
                raise
            first = b""
        if not first:
            self.last_closed = True
            return None
        return first + self._drain(quiet)


def connect_unix(path, timeout=DEFAULT_TIMEOUT):
    """Connect a UNIX stream socket, retrying while the backlog is full.

    swtpm does not accept() a second control client while it serves one, and
    its listen backlog is small: a non-blocking connect() (which is what a
    Python socket with a timeout does) then fails with EAGAIN instead of
    waiting.  Retry until ``timeout``, then leave ``timeout`` set on the socket.
    """
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(path)
        except (BlockingIOError, InterruptedError):
            sock.close()
            if time.monotonic() >= deadline:
                raise ProtocolError(f"connect({path}): backlog full for {timeout}s") from None
            time.sleep(0.005)
            continue
        except BaseException:
            sock.close()
            raise
        sock.settimeout(timeout)
        return sock


def connect(path, timeout=DEFAULT_TIMEOUT):
    return Ctrl(path, timeout)


def wait_closed(sock, timeout=DEFAULT_TIMEOUT):
    """Wait until the peer closes ``sock``; True if it did within timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], deadline - time.monotonic())
        if not r:
            break
        try:
            if not sock.recv(65536):
                return True
        except OSError:
            return True
    return False


# -- a worker's migration-key socket (--migrate, lib/mkey.h) -------------------

MKEY_SET, MKEY_STATUS, MKEY_CLEAR = 1, 2, 3
MKEY_OUT, MKEY_IN = 1, 2


def mkey(path, op, role=0, mid=b"", key=b"", raw=None):
    """One request on a worker's migration-key socket (lib/mkey.h): returns
    (result, role, id, exported, imported)."""
    req = raw if raw is not None else b"VMK1" + bytes([op]) + (
        bytes([role]) + mid + key if op == MKEY_SET else b"")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(req)
        ans = b""
        while len(ans) < 23:
            chunk = s.recv(64)
            if not chunk:
                break
            ans += chunk
    if len(ans) != 23:
        raise RuntimeError(f"migration-key answer of {len(ans)} bytes")
    result, r = struct.unpack(">IB", ans[:5])
    return result, r, ans[5:21], ans[21], ans[22]
