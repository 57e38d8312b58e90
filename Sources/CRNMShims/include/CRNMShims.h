#pragma once
// C shims for what Swift cannot reach directly: libmnl's iteration macros and sysconf-based constants.
// Every symbol is prefixed RNM_.
#include <libmnl/libmnl.h>
#include <stddef.h>
#include <sys/eventfd.h>

/// Fills tb[type] with each attribute of the message payload after `offset` bytes (later ones win),
/// for types 0...max; other types are skipped. Wraps the mnl_attr_for_each() macro. Returns the number
/// of attributes seen, or -1 if the attribute stream is malformed.
int RNM_mnl_attr_table(const struct nlmsghdr *nlh, unsigned int offset, const struct nlattr **tb, unsigned int max);

/// Same for the attributes nested inside `nested` (mnl_attr_for_each_nested).
int RNM_mnl_attr_table_nested(const struct nlattr *nested, const struct nlattr **tb, unsigned int max);

/// MNL_SOCKET_BUFFER_SIZE (a macro that calls sysconf).
size_t RNM_mnl_socket_buffer_size(void);

#include <pthread.h>
/// pthread_setname_np (needs _GNU_SOURCE, which Swift's Glibc module does not define).
int RNM_pthread_setname(pthread_t thread, const char *name);

#include <sys/types.h>
/// gettid() (glibc only declares it with _GNU_SOURCE).
pid_t RNM_gettid(void);

#include <stdint.h>
/// SO_PEERCRED (struct ucred needs _GNU_SOURCE). Returns 0 or -1 with errno.
int RNM_peer_cred(int fd, uint32_t *pid, uint32_t *uid, uint32_t *gid);

/// SO_PEERGROUPS (Linux 4.13): the peer's supplementary groups, at most `max`. Returns the count or -1.
int RNM_peer_groups(int fd, uint32_t *groups, int max);

/// getgrnam_r: the gid of a group name. Returns 0, or -1 if there is no such group.
int RNM_group_id(const char *name, uint32_t *gid);

/// umask(2) around bind so a socket is created with its final mode (no window with a wider one).
int RNM_bind_unix(int fd, const char *path, unsigned int mode);

/// accept4(2) with SOCK_NONBLOCK | SOCK_CLOEXEC (needs _GNU_SOURCE).
int RNM_accept_nonblocking(int fd);

/// memfd_create(name, MFD_CLOEXEC): an anonymous file (the rendered table is handed to libnftables as
/// /proc/self/fd/N so its diagnostics carry line numbers). Returns the fd or -1.
int RNM_memfd(const char *name);

/// unshare(CLONE_NEWNET) for the calling thread only: a scratch network namespace. Returns 0 or -1.
int RNM_unshare_netns(void);

/// malloc_trim(0): hands freed heap back to the kernel after a large load.
void RNM_malloc_trim(void);

/// Attaches a classic BPF filter to a NETLINK_ROUTE socket subscribed to the route groups: RTM_NEWROUTE and
/// RTM_DELROUTE notifications are delivered only if their rtm_protocol is `protocol`; every other message
/// passes. The kernel drops the rest before queuing them, so a router's full BGP table neither costs a
/// wakeup nor fills the receive buffer (an overrun). Returns 0 or -1 with errno.
int RNM_netlink_route_protocol_filter(int fd, uint8_t protocol);

/// setsockopt(fd, SOL_NETLINK, option, &value, sizeof(int)): NETLINK_EXT_ACK, NETLINK_CAP_ACK,
/// NETLINK_GET_STRICT_CHK. Returns 0 or -1 with errno.
int RNM_netlink_set_option(int fd, int option, int value);
