/* faultfs: an LD_PRELOAD shim for the I/O fault and power-loss tests (tests/torture).

   It counts the write-side calls (write, pwrite, pwrite64, fsync, fdatasync, ftruncate) a
   process makes on files under $FAULTFS_DIR, and fails the Nth one (or the Nth and every
   later one) with an errno, as a failing disk would. With $FAULTFS_LOG it also appends a
   record of each write (with its data), fsync and truncate that succeeded, so a test can
   rebuild what had reached the disk at the last fsync of each file (power loss):
       'R' kind('W'|'S'|'T') u16 path length, path, i64 offset, i64 length, data (W only)
   one write() per record, so records of concurrent processes never interleave.

   Control lives in a small file ($FAULTFS_CTL) mapped shared, so the test changes N between
   runs and reads the counter, across threads and processes:
       int64 [0] calls counted   [1] fail at call N (0: never)   [2] 1 once, 2 from N on
             [3] errno to return [4] failures injected
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static volatile int64_t *ctl;
static const char *dir;
static size_t dir_len;
static int log_fd = -1;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off64_t);

__attribute__((constructor)) static void faultfs_init(void) {
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
    dir = getenv("FAULTFS_DIR");
    dir_len = dir ? strlen(dir) : 0;
    const char *path = getenv("FAULTFS_CTL");
    if (path) {
        int fd = open(path, O_RDWR);
        if (fd >= 0) {
            void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED) ctl = p;
            close(fd);
        }
    }
    const char *log = getenv("FAULTFS_LOG");
    if (log) log_fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
}

/* Is fd a file under FAULTFS_DIR? Its path in *out. */
static int watched(int fd, char *out, size_t size) {
    if (!ctl || !dir_len || fd < 0) return 0;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, size - 1);
    if (n <= 0) return 0;
    out[n] = 0;
    return strncmp(out, dir, dir_len) == 0;
}

/* Count the call; return the errno to fail it with, or 0. */
static int fault(void) {
    int64_t n = __atomic_add_fetch(&ctl[0], 1, __ATOMIC_SEQ_CST);
    int64_t at = ctl[1];
    if (at <= 0) return 0;
    if (n == at || (ctl[2] == 2 && n > at)) {
        __atomic_add_fetch(&ctl[4], 1, __ATOMIC_SEQ_CST);
        return (int)ctl[3];
    }
    return 0;
}

static void note(char kind, const char *path, int64_t off, int64_t len, const void *data) {
    if (log_fd < 0) return;
    uint16_t plen = (uint16_t)strlen(path);
    size_t dlen = kind == 'W' ? (size_t)len : 0;
    size_t size = 4 + plen + 16 + dlen;
    char *rec = malloc(size);
    if (!rec) return;
    rec[0] = 'R';
    rec[1] = kind;
    memcpy(rec + 2, &plen, 2);
    memcpy(rec + 4, path, plen);
    memcpy(rec + 4 + plen, &off, 8);
    memcpy(rec + 12 + plen, &len, 8);
    if (dlen) memcpy(rec + 20 + plen, data, dlen);
    real_write(log_fd, rec, size);
    free(rec);
}

#define GUARD(call, off, len, fail_value)                        \
    char path[4096];                                             \
    int is_watched = watched(fd, path, sizeof path);             \
    if (is_watched) {                                            \
        int e = fault();                                         \
        if (e) { errno = e; return fail_value; }                 \
    }

ssize_t write(int fd, const void *buf, size_t count) {
    GUARD("write", -1, count, -1)
    ssize_t r = real_write(fd, buf, count);
    if (is_watched && r >= 0) note('W', path, lseek(fd, 0, SEEK_CUR) - r, r, buf);
    return r;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    GUARD("pwrite", offset, count, -1)
    ssize_t r = real_pwrite(fd, buf, count, offset);
    if (is_watched && r >= 0) note('W', path, offset, r, buf);
    return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off64_t offset) {
    GUARD("pwrite64", offset, count, -1)
    ssize_t r = real_pwrite64(fd, buf, count, offset);
    if (is_watched && r >= 0) note('W', path, offset, r, buf);
    return r;
}

int fsync(int fd) {
    GUARD("fsync", -1, 0, -1)
    int r = real_fsync(fd);
    if (is_watched && r == 0) note('S', path, -1, 0, NULL);
    return r;
}

int fdatasync(int fd) {
    GUARD("fdatasync", -1, 0, -1)
    int r = real_fdatasync(fd);
    if (is_watched && r == 0) note('S', path, -1, 0, NULL);
    return r;
}

int ftruncate(int fd, off_t length) {
    GUARD("ftruncate", length, 0, -1)
    int r = real_ftruncate(fd, length);
    if (is_watched && r == 0) note('T', path, length, 0, NULL);
    return r;
}

int ftruncate64(int fd, off64_t length) {
    GUARD("ftruncate64", length, 0, -1)
    int r = real_ftruncate64(fd, length);
    if (is_watched && r == 0) note('T', path, length, 0, NULL);
    return r;
}
