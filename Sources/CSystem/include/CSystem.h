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

#endif
