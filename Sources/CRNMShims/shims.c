#include "CRNMShims.h"
#include <sys/mman.h>
#include <sched.h>
#include <malloc.h>

int RNM_mnl_attr_table(const struct nlmsghdr *nlh, unsigned int offset, const struct nlattr **tb, unsigned int max) {
    const struct nlattr *attr;
    int n = 0;
    for (unsigned int i = 0; i <= max; i++) tb[i] = NULL;
    mnl_attr_for_each(attr, nlh, offset) {
        uint16_t type = mnl_attr_get_type(attr);
        if (type <= max) tb[type] = attr;
        n++;
    }
    /* mnl_attr_for_each stops at the first attribute that does not fit: anything left over is malformed. */
    if ((const char *)attr < (const char *)mnl_nlmsg_get_payload_tail(nlh)) return -1;
    return n;
}

int RNM_mnl_attr_table_nested(const struct nlattr *nested, const struct nlattr **tb, unsigned int max) {
    const struct nlattr *attr;
    int n = 0;
    for (unsigned int i = 0; i <= max; i++) tb[i] = NULL;
    mnl_attr_for_each_nested(attr, nested) {
        uint16_t type = mnl_attr_get_type(attr);
        if (type <= max) tb[type] = attr;
        n++;
    }
    return n;
}

size_t RNM_mnl_socket_buffer_size(void) { return MNL_SOCKET_BUFFER_SIZE; }

int RNM_pthread_setname(pthread_t thread, const char *name) { return pthread_setname_np(thread, name); }

#include <unistd.h>
pid_t RNM_gettid(void) { return gettid(); }

#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

int RNM_peer_cred(int fd, uint32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred c;
    socklen_t len = sizeof(c);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) != 0) return -1;
    *pid = (uint32_t)c.pid;
    *uid = (uint32_t)c.uid;
    *gid = (uint32_t)c.gid;
    return 0;
}

int RNM_peer_groups(int fd, uint32_t *groups, int max) {
    socklen_t len = (socklen_t)(max * sizeof(gid_t));
    gid_t *buf = calloc((size_t)max, sizeof(gid_t));
    if (!buf) return -1;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, buf, &len) != 0) {
        free(buf);
        return -1;
    }
    int n = (int)(len / sizeof(gid_t));
    for (int i = 0; i < n && i < max; i++) groups[i] = (uint32_t)buf[i];
    free(buf);
    return n < max ? n : max;
}

int RNM_group_id(const char *name, uint32_t *gid) {
    struct group g, *result = NULL;
    char buf[16384];
    if (getgrnam_r(name, &g, buf, sizeof(buf), &result) != 0 || result == NULL) return -1;
    *gid = (uint32_t)g.gr_gid;
    return 0;
}

int RNM_bind_unix(int fd, const char *path, unsigned int mode) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(addr.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(addr.sun_path, path);
    mode_t old = umask((mode_t)(~mode & 0777));
    int r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    int saved = errno;
    umask(old);
    errno = saved;
    return r;
}

int RNM_accept_nonblocking(int fd) { return accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }

int RNM_memfd(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int RNM_unshare_netns(void) { return unshare(CLONE_NEWNET); }

void RNM_malloc_trim(void) { malloc_trim(0); }

#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <arpa/inet.h>

int RNM_netlink_route_protocol_filter(int fd, uint8_t protocol) {
    /* Absolute loads of half words are in network byte order; nlmsg_type and nlmsg_flags are in host order,
     * hence htons. Route messages pass if they carry `protocol`, and so does any RTM_NEWROUTE that replaced
     * a route (NLM_F_REPLACE): it may have replaced one of ours. Everything else that is not a route passes. */
    struct sock_filter code[] = {
        /* 0 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, offsetof(struct nlmsghdr, nlmsg_type)),
        /* 1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htons(RTM_NEWROUTE), 1, 0),
        /* 2 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, htons(RTM_DELROUTE), 2, 4),
        /* 3 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, offsetof(struct nlmsghdr, nlmsg_flags)),
        /* 4 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, htons(NLM_F_REPLACE), 2, 0),
        /* 5 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, NLMSG_HDRLEN + offsetof(struct rtmsg, rtm_protocol)),
        /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, protocol, 0, 1),
        /* 7 */ BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
        /* 8 */ BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
}

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

int RNM_netlink_set_option(int fd, int option, int value) {
    return setsockopt(fd, SOL_NETLINK, option, &value, sizeof(value));
}
