/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <string.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <seccomp.h>

#include "log.h"
#include "sandbox.h"

/*
 * Everything the worker does after start-up: serve sockets, run libtpms
 * (malloc, OpenSSL's getrandom and locks), write its state directory
 * durably, log to stderr, exit.  Nothing else: no exec, no new sockets or
 * connections, no ptrace, no mounts.
 */
static const int allowed[] = {
        SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
        SCMP_SYS(recvmsg), SCMP_SYS(sendmsg), SCMP_SYS(recvfrom), SCMP_SYS(sendto),
        SCMP_SYS(ppoll), SCMP_SYS(poll), SCMP_SYS(accept4), SCMP_SYS(listen), SCMP_SYS(close),
        SCMP_SYS(openat), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(lseek),
        SCMP_SYS(fsync), SCMP_SYS(fdatasync), SCMP_SYS(ftruncate), SCMP_SYS(renameat),
        SCMP_SYS(renameat2), SCMP_SYS(unlinkat), SCMP_SYS(unlink), SCMP_SYS(fcntl), SCMP_SYS(flock),
        SCMP_SYS(mmap), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(brk),
        SCMP_SYS(madvise), SCMP_SYS(mprotect), SCMP_SYS(mlock), SCMP_SYS(munlock),
        SCMP_SYS(getrandom), SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep),
        SCMP_SYS(nanosleep), SCMP_SYS(futex), SCMP_SYS(getpid), SCMP_SYS(gettid),
        SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn),
        SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(restart_syscall),
        SCMP_SYS(sched_yield),
};

int vtpm_sandbox_no_dumps(VrotError *err)
{
        struct rlimit none = { 0, 0 };

        if (setrlimit(RLIMIT_CORE, &none) < 0)
                return vrot_err(err, errno, "disabling core dumps: %s", strerror(errno));
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return vrot_err(err, errno, "PR_SET_DUMPABLE: %s", strerror(errno));
        return 0;
}

static int drop_to(const char *user, int state_dirfd, const char *state_dir, VrotError *err)
{
        struct passwd *pw = getpwnam(user);

        if (!pw)
                return vrot_err(err, ENOENT, "--runas: no user %s", user);
        if (setgroups(0, NULL) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
            setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0)
                return vrot_err(err, errno, "--runas %s: %s", user, strerror(errno));
        if (setresuid(0, 0, 0) == 0)
                return vrot_err(err, EPERM, "--runas %s: could regain root", user);
        /* Through the descriptor: the worker never walks its parents (a
         * root-only directory of every instance's state). */
        if (faccessat(state_dirfd, ".", W_OK | X_OK, 0) < 0)
                return vrot_err(err, errno, "--runas %s: state directory %s not writable: %s",
                                user, state_dir, strerror(errno));
        /* Dropping uid resets "dumpable": set it again. */
        return vtpm_sandbox_no_dumps(err);
}

/* The allow-list as a libseccomp context (transfer full), or NULL. */
static scmp_filter_ctx allow_list(void)
{
        /* Sanitizer runtimes (LeakSanitizer's ptrace at exit) need syscalls
         * a worker never makes; in such builds violations are logged, not
         * fatal.  Release builds kill the process. */
#if defined(__SANITIZE_ADDRESS__)
        uint32_t deny = SCMP_ACT_LOG;
#else
        uint32_t deny = SCMP_ACT_KILL_PROCESS;
#endif
        scmp_filter_ctx ctx = seccomp_init(deny);
        int r = 0;

        for (size_t i = 0; ctx && r == 0 && i < sizeof(allowed) / sizeof(allowed[0]); i++)
                if (allowed[i] >= 0)    /* __NR_SCMP_ERROR on arches without it */
                        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0);
        /* vtpm_sandbox_idle(): its own scheduling, and only ever lowered.
         * (Spelt out: SCMP_A0() leaves datum_b to the compiler.) */
        if (ctx && r == 0) {
                const struct scmp_arg_cmp self = { .arg = 0, .op = SCMP_CMP_EQ, .datum_a = 0,
                                                   .datum_b = 0 };
                const struct scmp_arg_cmp idle = { .arg = 1, .op = SCMP_CMP_EQ,
                                                   .datum_a = SCHED_IDLE, .datum_b = 0 };

                r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(sched_setscheduler), 2, self,
                                     idle);
        }
        if (r < 0) {
                seccomp_release(ctx);
                return NULL;
        }
        return ctx;
}

int vtpm_sandbox_filter_build(VtpmFilter *ret, VrotError *err)
{
        scmp_filter_ctx ctx = allow_list();
        struct stat st;
        int fd = -1, r = -EIO;

        *ret = (VtpmFilter){ 0 };
        /* libseccomp 2.5 exports BPF to a descriptor only. */
        if (ctx && (fd = memfd_create("vrot-seccomp", MFD_CLOEXEC)) >= 0 &&
            seccomp_export_bpf(ctx, fd) == 0 && fstat(fd, &st) == 0 && st.st_size > 0 &&
            st.st_size % sizeof(struct sock_filter) == 0 &&
            st.st_size / sizeof(struct sock_filter) <= BPF_MAXINSNS &&
            (ret->insns = malloc((size_t)st.st_size)) &&
            pread(fd, ret->insns, (size_t)st.st_size, 0) == st.st_size) {
                ret->len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
                r = 0;
        }
        if (fd >= 0)
                close(fd);
        seccomp_release(ctx);
        if (r < 0) {
                vtpm_sandbox_filter_free(ret);
                return vrot_err(err, EIO, "building the seccomp filter failed");
        }
        return 0;
}

void vtpm_sandbox_filter_free(VtpmFilter *f)
{
        free(f->insns);
        *f = (VtpmFilter){ 0 };
}

static int install_seccomp(const VtpmFilter *filter, VrotError *err)
{
        struct sock_fprog prog;
        scmp_filter_ctx ctx;
        int r;

        if (filter && filter->len) {
                prog = (struct sock_fprog){ .len = filter->len, .filter = filter->insns };
                if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
                        return vrot_err(err, errno, "installing the seccomp filter: %s", strerror(errno));
                return 0;
        }
        ctx = allow_list();
        if (!ctx)
                return vrot_err(err, ENOMEM, "building the seccomp filter failed");
        r = seccomp_load(ctx);
        seccomp_release(ctx);
        if (r < 0)
                return vrot_err(err, -r, "installing the seccomp filter: %s", strerror(-r));
        return 0;
}

/*
 * No capabilities, also for a worker that stays root (no --runas): root
 * without capabilities is only an owner of files, and cannot override
 * their modes, signal others' processes, or change its IDs.  The bounding
 * set goes first, while CAP_SETPCAP is still there; a worker started
 * without it (not root) has nothing to drop.
 */
static int drop_bounding_set(VrotError *err)
{
        for (int cap = 0; cap <= 63; cap++) {
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0)
                        continue;
                if (errno == EINVAL)
                        return 0;       /* beyond this kernel's last: they are numbered densely */
                if (errno == EPERM && geteuid() != 0)
                        return 0;
                return vrot_err(err, errno, "dropping capability %d: %s", cap, strerror(errno));
        }
        return 0;
}

static int drop_capabilities(VrotError *err)
{
        struct __user_cap_header_struct head = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3] = { { 0 } };

        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                return vrot_err(err, errno, "clearing ambient capabilities: %s", strerror(errno));
        if (syscall(SYS_capset, &head, none) < 0)
                return vrot_err(err, errno, "dropping capabilities: %s", strerror(errno));
        return 0;
}

int vtpm_sandbox_enter(const char *runas, int state_dirfd, const char *state_dir,
                       const VtpmFilter *filter, VrotError *err)
{
        int r;

        if ((r = drop_bounding_set(err)) < 0)
                return r;
        if (runas && (r = drop_to(runas, state_dirfd, state_dir, err)) < 0)
                return r;
        if ((r = drop_capabilities(err)) < 0)
                return r;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return vrot_err(err, errno, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
        return install_seccomp(filter, err);
}

void vtpm_sandbox_idle(void)
{
        struct sched_param none = { .sched_priority = 0 };

        if (sched_setscheduler(0, SCHED_IDLE, &none) < 0)
                log_debug("SCHED_IDLE: %s", strerror(errno));
        sched_yield();          /* whoever this CPU woke up runs now */
}
