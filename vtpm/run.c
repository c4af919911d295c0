/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * One worker's life from its parsed options to its exit status: read the
 * key, verify the state, start libtpms, open the sockets, enter the sandbox,
 * serve.  main() runs it directly; the fork server runs it in each child.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libtpms/tpm_error.h>

#include "run.h"
#include "sandbox.h"
#include "secret.h"
#include "seal.h"
#include "tpm.h"
#include "uuid.h"
#include "worker.h"

#define TPM2_RC_INITIALIZE 0x100

/* Binds a UNIX socket at @path with permissions @mode; it listens later
 * (start_listening).  A stale socket left by a killed worker is replaced;
 * any other file is not. */
static int bind_unix(const char *path, mode_t mode, VrotError *err)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        mode_t old;
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return vrot_err(err, ENAMETOOLONG, "socket path too long: %s", path);
        strcpy(sa.sun_path, path);
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return vrot_err(err, EEXIST, "%s exists and is not a socket", path);
                unlink(path);
        }
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return vrot_err(err, errno, "socket: %s", strerror(errno));
        old = umask(0777 & ~mode);      /* no window with wider permissions */
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (r < 0 || chmod(path, mode) < 0) {
                r = vrot_err(err, errno, "binding %s: %s", path, strerror(errno));
                close(fd);
                return r;
        }
        return fd;
}

static int open_state(const VtpmArgs *a, const VrotSealer *sealer, VrotStore **store)
{
        VrotError err = { 0 };
        int r = vrot_store_open(a->state_dir, sealer, a->min_generation, store, &err);

        if (r == 0)
                return 0;
        log_error("refusing to start: %s", err.msg);
        /* Refused content is final (the files are left untouched); anything
         * else - a missing directory, a held lock, I/O - may pass. */
        return r == -EUCLEAN ? VTPM_EXIT_STATE : EXIT_FAILURE;
}

static int start_tpm(const VtpmArgs *a, Worker *w)
{
        uint32_t rc;

        if (vtpm_tpm_setup(w->store) != TPM_SUCCESS) {
                log_error("libtpms refused the TPM 2.0 set-up");
                return -1;
        }
        if (!a->not_need_init)
                return 0;
        rc = vtpm_tpm_init(0);
        if (rc == TPM_SUCCESS && a->startup_clear) {
                rc = vtpm_tpm_startup_clear();
                /* TPM_RC_INITIALIZE: a stored volatile state was resumed, so
                 * the TPM is started already (swtpm carries on too). */
                if (rc == TPM2_RC_INITIALIZE) {
                        log_info("volatile state resumed: TPM2_Startup not needed");
                        rc = TPM_SUCCESS;
                }
        }
        if (rc != TPM_SUCCESS) {
                const char *why = vtpm_tpm_store_failure();

                log_error("starting the TPM failed (0x%x)%s%s", rc, why ? ": " : "", why ? why : "");
                return -1;
        }
        return 0;
}

/* Bound at start-up, while the worker may still hold the privileges the
 * paths need; listening only once it is sandboxed and its TPM is up. */
static int open_sockets(const VtpmArgs *a, Worker *w)
{
        VrotError err = { 0 };

        if (a->server) {
                w->data_listen = bind_unix(a->server, a->server_mode, &err);
                if (w->data_listen < 0)
                        goto fail;
                w->data_path = a->server;
        }
        if (a->migrate) {
                /* 0600: vrotd (root) and the worker's own user, nobody else. */
                w->mig.listen = bind_unix(a->migrate, 0600, &err);
                if (w->mig.listen < 0)
                        goto fail;
                w->mig.path = a->migrate;
                w->mig.enabled = true;
        }
        w->ctrl_listen = bind_unix(a->ctrl, a->ctrl_mode, &err);
        if (w->ctrl_listen < 0)
                goto fail;
        w->ctrl_path = a->ctrl;
        return 0;
fail:
        log_error("%s", err.msg);
        return -1;
}

/* A listening control socket is the sign that the worker is ready: vrotd
 * and the tests wait for it.  So the data socket listens first, and both
 * only after the sandbox is in force and the TPM is up. */
static int start_listening(Worker *w)
{
        if ((w->data_listen >= 0 && listen(w->data_listen, 8) < 0) ||
            (w->mig.enabled && listen(w->mig.listen, 4) < 0) || listen(w->ctrl_listen, 8) < 0) {
                log_error("listen: %s", strerror(errno));
                return -1;
        }
        return 0;
}

/* Tells whoever started the worker that it listens (vrotd through the fork
 * server, a test through a pipe), so nobody needs to poll the socket.  A
 * reader that went away is no reason to stop serving, unless the worker
 * ends with its starter: then the descriptor stays open for the loop to
 * watch, and a reader gone already ends the loop at once. */
static void notify_ready(int fd, Worker *w)
{
        static const char line[] = "ready\n";

        if (fd < 0)
                return;
        if (write(fd, line, sizeof(line) - 1) < 0)
                log_debug("--ready-fd: %s", strerror(errno));
        if (w->end_with_starter)
                w->starter_fd = fd;
        else
                close(fd);
}

static void close_sockets(Worker *w)
{
        if (w->ctrl_listen >= 0) {
                close(w->ctrl_listen);
                unlink(w->ctrl_path);
        }
        if (w->data_listen >= 0) {
                close(w->data_listen);
                unlink(w->data_path);
        }
        if (w->mig.enabled) {
                close(w->mig.listen);
                unlink(w->mig.path);
        }
        vtpm_migkey_clear(w);
}

int vtpm_run(const VtpmArgs *a, const VtpmFilter *filter)
{
        _cleanup_secret_ VrotSecret *key = NULL;
        VrotSealer sealer = { 0 };
        VrotError err = { 0 };
        Worker w = { .ctrl_listen = -1, .data_listen = -1, .starter_fd = -1,
                     .end_with_starter = a->end_with_starter,
                     .ctrl = { .fd = -1 }, .data = { .fd = -1 }, .mig = { .listen = -1 } };
        bool stage_startup;
        int ret = EXIT_FAILURE;

        vtpm_loop_signals();
        vrot_log_init("vrot-vtpm", a->log_level);
        if (vrot_uuid_parse(a->uuid, sealer.uuid, &err) < 0) {
                log_error("--uuid: %s", err.msg);
                return VTPM_EXIT_USAGE;
        }
        if (vtpm_sandbox_no_dumps(&err) < 0) {
                log_error("%s", err.msg);
                return EXIT_FAILURE;
        }
        if (a->insecure) {
                log_warn("--insecure-plaintext: the state is NOT protected; for tests only");
        } else {
                key = vrot_secret_read_fd(a->key_fd, VROT_SEAL_KEY_LEN, &err);
                close(a->key_fd);
                if (!key) {
                        log_error("state key: %s", err.msg);
                        return EXIT_FAILURE;
                }
                sealer.key = vrot_secret_data(key);
        }
        w.sealer = &sealer;

        ret = open_state(a, &sealer, &w.store);
        if (ret != 0)
                return ret;
        /* A TPM2_Startup at start stores the state: staged before "ready",
         * durable after it, before any command is read (vrot_store_stage()). */
        stage_startup = a->not_need_init && a->startup_clear && !a->defer_writes;
        if (a->defer_writes || stage_startup)
                vrot_store_defer(w.store);
        ret = EXIT_FAILURE;
        if (open_sockets(a, &w) < 0)
                goto out;
        /* Drop privileges before the TPM runs, so that every state file it
         * writes belongs to the --runas user, who must read it back later. */
        if (vtpm_sandbox_enter(a->runas, vrot_store_dirfd(w.store), a->state_dir, filter, &err) < 0) {
                log_error("%s", err.msg);
                goto out;
        }
        if (start_tpm(a, &w) < 0)
                goto out;
        if (stage_startup && vrot_store_stage(w.store, &err) < 0) {
                log_error("starting the TPM failed: its state cannot be written: %s", err.msg);
                goto out;
        }
        if (start_listening(&w) < 0)
                goto out;
        notify_ready(a->ready_fd, &w);
        if (vrot_store_commit(w.store, &err) < 0) {
                log_error("writing the state after start: %s", err.msg);
                goto out;
        }
        if (a->prefault) {
                vtpm_tpm_prefault();
                /* And a locked page for BIND's key, made now rather than then. */
                vrot_secret_free(vrot_secret_new(VROT_SEAL_KEY_LEN, NULL));
        }
        log_info("instance %s serving on %s%s%s (state generation %" PRIu64 ")", a->uuid,
                 a->ctrl, a->server ? " and " : "", a->server ? a->server : "",
                 vrot_store_generation(w.store));
        if (vtpm_loop_run(&w) == 0 && !w.starter_gone)
                ret = EXIT_SUCCESS;
out:
        vtpm_tpm_free();
        /* defer-writes: what the TPM stored is written now, once; a state
         * that could not be written is a failure of the whole run.  Not for
         * a starter that is gone: nobody is left to want that state (vrotd's
         * pool removes an unfinished entry), and a worker that outlived its
         * daemon and fork server must not write it into a directory the
         * next daemon may be removing. */
        if (a->defer_writes && !w.starter_gone && vrot_store_flush(w.store, &err) < 0) {
                log_error("writing the state at exit: %s", err.msg);
                ret = EXIT_FAILURE;
        }
        close_sockets(&w);
        if (w.starter_fd >= 0)
                close(w.starter_fd);
        vrot_store_free(w.store);
        vrot_secret_free(w.bind_key);
        return ret;
}
