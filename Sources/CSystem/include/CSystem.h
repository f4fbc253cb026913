// CSystem: the few Linux system interfaces that Swift's Glibc module does not export,
// plus thin inline wrappers for calls that are variadic or use unions in C.
#ifndef CSYSTEM_H
#define CSYSTEM_H

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <stdint.h>

/// Sets O_NONBLOCK on `fd`. Returns 0 or -1 with errno set.
static inline int csys_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/// Sets FD_CLOEXEC on `fd`. Returns 0 or -1 with errno set.
static inline int csys_set_cloexec(int fd) {
    int flags = fcntl(fd, F_GETFD, 0);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}

/// Sets an int-valued socket option. Returns 0 or -1 with errno set.
static inline int csys_setsockopt_int(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof(value));
}

/// Reads an int-valued socket option into *value. Returns 0 or -1 with errno set.
static inline int csys_getsockopt_int(int fd, int level, int name, int *value) {
    socklen_t len = sizeof(*value);
    return getsockopt(fd, level, name, value, &len);
}

/// Builds an epoll_event whose data is the 64-bit `token` (the union is awkward from Swift).
static inline struct epoll_event csys_epoll_event(uint32_t events, uint64_t token) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = token;
    return ev;
}

/// The 64-bit token stored in an epoll_event.
static inline uint64_t csys_epoll_event_token(const struct epoll_event *ev) {
    return ev->data.u64;
}

/// The event mask of an epoll_event.
static inline uint32_t csys_epoll_event_mask(const struct epoll_event *ev) {
    return ev->events;
}

// ---- EventLoop helpers (module EventLoop) ----
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

/// epoll_create1(EPOLL_CLOEXEC). Returns the fd or -1 with errno set.
static inline int csys_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

/// A non-blocking, close-on-exec eventfd with counter 0. Returns the fd or -1 with errno set.
static inline int csys_eventfd_create(void) {
    return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

/// A non-blocking, close-on-exec CLOCK_MONOTONIC timerfd. Returns the fd or -1 with errno set.
static inline int csys_timerfd_create(void) {
    return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
}

/// Arms `fd` to expire once at the absolute CLOCK_MONOTONIC time `deadline_ns` (0 disarms; a past
/// deadline expires at once). Returns 0 or -1 with errno set.
static inline int csys_timerfd_arm_abs(int fd, uint64_t deadline_ns) {
    struct itimerspec its;
    its.it_interval.tv_sec = 0;
    its.it_interval.tv_nsec = 0;
    if (deadline_ns == 0) deadline_ns = 1; // an all-zero it_value would disarm; 1 ns is long past
    its.it_value.tv_sec = (time_t)(deadline_ns / 1000000000ull);
    its.it_value.tv_nsec = (long)(deadline_ns % 1000000000ull);
    return timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL);
}

/// CLOCK_MONOTONIC now, in nanoseconds.
static inline uint64_t csys_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/// sched_getaffinity(0) for the calling thread, written as a raw CPU bit mask into `buf`.
/// Returns the number of bytes the kernel wrote, or -1 with errno set.
static inline long csys_sched_getaffinity_raw(void *buf, unsigned long len) {
    return syscall(SYS_sched_getaffinity, 0, len, buf);
}

/// sched_setaffinity(0) for the calling thread from a raw CPU bit mask. Returns 0 or -1 with errno set.
static inline long csys_sched_setaffinity_raw(const void *buf, unsigned long len) {
    return syscall(SYS_sched_setaffinity, 0, len, buf);
}

/// Reads RLIMIT_NOFILE into *soft and *hard (RLIM_INFINITY is reported as -1). Returns 0 or -1.
static inline int csys_get_nofile(long long *soft, long long *hard) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    *soft = rl.rlim_cur == RLIM_INFINITY ? -1 : (long long)rl.rlim_cur;
    *hard = rl.rlim_max == RLIM_INFINITY ? -1 : (long long)rl.rlim_max;
    return 0;
}

/// Sets the RLIMIT_NOFILE soft limit to `soft`, keeping the hard limit. Returns 0 or -1 with errno set.
static inline int csys_set_nofile_soft(long long soft) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    rl.rlim_cur = (rlim_t)soft;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

/// sendmsg(fd, {iov, count}, MSG_NOSIGNAL): a writev that never raises SIGPIPE on a socket.
/// Returns the bytes written or -1 with errno set.
static inline ssize_t csys_sendv(int fd, const struct iovec *iov, int count) {
    struct msghdr msg = {0};
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = (size_t)count;
    return sendmsg(fd, &msg, MSG_NOSIGNAL);
}

/// accept4(fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC) through the raw syscall (glibc declares
/// accept4 only under _GNU_SOURCE). Returns the new fd or -1 with errno set.
static inline int csys_accept_nonblocking(int fd, struct sockaddr *addr, socklen_t *len) {
    return (int)syscall(SYS_accept4, fd, addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

#include <sys/prctl.h>
/// Names the calling thread (Linux keeps the first 15 bytes). Returns 0 or -1 with errno set.
static inline int csys_set_thread_name(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}

/// Starts writeback of `count` bytes of `fd` from `offset` without waiting for it
/// (sync_file_range(2) with SYNC_FILE_RANGE_WRITE). Returns 0 or -1 with errno set.
int csys_start_writeback(int fd, int64_t offset, int64_t count);

#endif
