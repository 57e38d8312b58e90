/* nlbench: measures rnm from the outside, in the namespace it runs in.
 *
 *   nlbench latency COUNT IFNAME PACE_US [TABLE SET]
 *       Adds COUNT addresses (198.18.x.y/32) one at a time to IFNAME and deletes each again, PACE_US apart.
 *       For every change it timestamps the kernel's RTM_NEWADDR/RTM_DELADDR notification and the nftables
 *       NEWSETELEM/DELSETELEM notification that carries the same address (from whoever commits it), and
 *       prints the latencies as JSON. Both timestamps are taken by this one process on CLOCK_MONOTONIC.
 *   nlbench gens
 *       Prints every nftables generation (commit) as it arrives, with the committing task's pid.
 *   nlbench watch QUIET_MS
 *       Listens until QUIET_MS pass without any notification (after at least one), then prints JSON: counts
 *       and first/last timestamps of address and set-element notifications, and new generations by pid.
 *
 * Build: cc -O2 -o nlbench nlbench.c -lmnl
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static struct mnl_socket *open_sock(int bus, unsigned groups, int group_add) {
    struct mnl_socket *nl = mnl_socket_open(bus);
    if (!nl || mnl_socket_bind(nl, groups, MNL_SOCKET_AUTOPID) < 0) { perror("netlink"); exit(1); }
    if (group_add) mnl_socket_setsockopt(nl, NETLINK_ADD_MEMBERSHIP, &group_add, sizeof(group_add));
    int sz = 16 << 20;
    setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz));
    return nl;
}

/* Walks the IPv4 keys of a NEWSETELEM/DELSETELEM message. */
static int elem_keys(const struct nlmsghdr *nlh, uint32_t *keys, int max) {
    int n = 0;
    struct nlattr *a, *e, *f, *d;
    mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
        if (mnl_attr_get_type(a) != NFTA_SET_ELEM_LIST_ELEMENTS) continue;
        mnl_attr_for_each_nested(e, a) {
            mnl_attr_for_each_nested(f, e) {
                if (mnl_attr_get_type(f) != NFTA_SET_ELEM_KEY) continue;
                mnl_attr_for_each_nested(d, f) {
                    if (mnl_attr_get_type(d) == NFTA_DATA_VALUE && mnl_attr_get_payload_len(d) == 4 && n < max)
                        keys[n++] = *(uint32_t *)mnl_attr_get_payload(d);
                }
            }
        }
    }
    return n;
}

static uint32_t addr_of(const struct nlmsghdr *nlh) {
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
    if (ifa->ifa_family != AF_INET) return 0;
    struct nlattr *a;
    uint32_t local = 0;
    mnl_attr_for_each(a, nlh, sizeof(*ifa)) {
        if (mnl_attr_get_type(a) == IFA_LOCAL && mnl_attr_get_payload_len(a) == 4) local = *(uint32_t *)mnl_attr_get_payload(a);
    }
    return local;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void request_addr(struct mnl_socket *rt, int type, unsigned ifindex, uint32_t addr) {
    char buf[256];
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (type == RTM_NEWADDR ? NLM_F_CREATE | NLM_F_EXCL : 0);
    nlh->nlmsg_seq = 1;
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
    ifa->ifa_family = AF_INET;
    ifa->ifa_prefixlen = 32;
    ifa->ifa_index = ifindex;
    mnl_attr_put_u32(nlh, IFA_LOCAL, addr);
    mnl_attr_put_u32(nlh, IFA_ADDRESS, addr);
    if (mnl_socket_sendto(rt, nlh, nlh->nlmsg_len) < 0) { perror("sendto"); exit(1); }
    char ack[8192];
    int n = mnl_socket_recvfrom(rt, ack, sizeof(ack));
    if (n < 0 || mnl_cb_run(ack, n, 1, mnl_socket_get_portid(rt), NULL, NULL) < 0) { perror("address request"); exit(1); }
}

static int latency(int count, const char *ifname, int pace_us) {
    unsigned ifindex = if_nametoindex(ifname);
    if (!ifindex) { perror(ifname); return 1; }
    struct mnl_socket *rt = open_sock(NETLINK_ROUTE, 0, 0);
    struct mnl_socket *mon = open_sock(NETLINK_ROUTE, RTMGRP_IPV4_IFADDR, 0);
    struct mnl_socket *nft = open_sock(NETLINK_NETFILTER, 0, NFNLGRP_NFTABLES);
    uint64_t *lat = calloc(2 * count, sizeof(uint64_t));
    int done = 0, missed = 0;
    static char buf[1 << 20];
    for (int i = 0; i < 2 * count; i++) {
        int del = i & 1;
        uint32_t addr = htonl(0xC6120000u | (uint32_t)(i / 2 + 1)); /* 198.18.0.0/15, benchmark space */
        request_addr(rt, del ? RTM_DELADDR : RTM_NEWADDR, ifindex, addr);
        uint64_t t0 = 0, t1 = 0, deadline = now_ns() + 2000000000ull;
        while ((!t0 || !t1) && now_ns() < deadline) {
            struct pollfd p[2] = {{mnl_socket_get_fd(mon), POLLIN, 0}, {mnl_socket_get_fd(nft), POLLIN, 0}};
            if (poll(p, 2, 100) <= 0) continue;
            for (int k = 0; k < 2; k++) {
                if (!(p[k].revents & POLLIN)) continue;
                int n = recv(p[k].fd, buf, sizeof(buf), MSG_DONTWAIT);
                uint64_t t = now_ns();
                if (n <= 0) continue;
                for (struct nlmsghdr *nlh = (struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, n); nlh = mnl_nlmsg_next(nlh, &n)) {
                    int type = nlh->nlmsg_type;
                    if (k == 0 && type == (del ? RTM_DELADDR : RTM_NEWADDR) && addr_of(nlh) == addr && !t0) t0 = t;
                    if (k == 1 && type == ((NFNL_SUBSYS_NFTABLES << 8) | (del ? NFT_MSG_DELSETELEM : NFT_MSG_NEWSETELEM))) {
                        uint32_t keys[4096];
                        int m = elem_keys(nlh, keys, 4096);
                        for (int j = 0; j < m; j++) if (keys[j] == addr && !t1) t1 = t;
                    }
                }
            }
        }
        if (t0 && t1 && t1 >= t0) lat[done++] = t1 - t0; else missed++;
        usleep(pace_us);
    }
    printf("{\"events\": %d, \"measured\": %d, \"missed\": %d, \"samples_us\": [", 2 * count, done, missed);
    for (int i = 0; i < done; i++) printf("%s%.1f", i ? ", " : "", lat[i] / 1000.0);
    qsort(lat, done, sizeof(uint64_t), cmp_u64);
    #define P(q) (done ? lat[(size_t)((q) * (done - 1))] / 1000.0 : -1)
    printf("], \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f}\n",
           P(0.5), P(0.9), P(0.99), P(1.0));
    return 0;
}

static int watch(int quiet_ms) {
    /* IPv4 only: the benchmarks change IPv4 addresses; IPv6 link-local DAD completing on fresh links would
     * otherwise show up as late "address events". */
    struct mnl_socket *mon = open_sock(NETLINK_ROUTE, RTMGRP_IPV4_IFADDR, 0);
    struct mnl_socket *nft = open_sock(NETLINK_NETFILTER, 0, NFNLGRP_NFTABLES);
    /* Notifications are one datagram each: read up to 256 per syscall so the listener keeps up with a storm
     * and its timestamps stay close to delivery. */
    enum { VLEN = 256, MSGSZ = 16384 };
    static char bufs[VLEN][MSGSZ];
    static struct mmsghdr msgs[VLEN];
    static struct iovec iovs[VLEN];
    for (int i = 0; i < VLEN; i++) {
        iovs[i].iov_base = bufs[i];
        iovs[i].iov_len = MSGSZ;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    uint64_t first_addr = 0, last_addr = 0, first_set = 0, last_set = 0, last_gen = 0, last_any = 0;
    long addr_events = 0, set_msgs = 0, gens = 0, overruns = 0;
    printf("{\"ready\": true}\n");
    fflush(stdout);
    while (1) {
        struct pollfd p[2] = {{mnl_socket_get_fd(mon), POLLIN, 0}, {mnl_socket_get_fd(nft), POLLIN, 0}};
        int r = poll(p, 2, 10);
        if (r == 0 && last_any && now_ns() - last_any > (uint64_t)quiet_ms * 1000000ull) break;
        for (int k = 0; k < 2; k++) {
            if (!(p[k].revents & POLLIN)) continue;
            int got = recvmmsg(p[k].fd, msgs, VLEN, MSG_DONTWAIT, NULL);
            uint64_t t = now_ns();
            if (got < 0 && errno == ENOBUFS) { overruns++; continue; }
            if (got <= 0) continue;
            last_any = t;
            for (int m = 0; m < got; m++) {
                int n = msgs[m].msg_len;
                for (struct nlmsghdr *nlh = (struct nlmsghdr *)bufs[m]; mnl_nlmsg_ok(nlh, n); nlh = mnl_nlmsg_next(nlh, &n)) {
                    int type = nlh->nlmsg_type;
                    if (k == 0 && (type == RTM_NEWADDR || type == RTM_DELADDR)) {
                        addr_events++;
                        if (!first_addr) first_addr = t;
                        last_addr = t;
                    }
                    if (k == 1) {
                        int sub = type & 0xff;
                        if (sub == NFT_MSG_NEWSETELEM || sub == NFT_MSG_DELSETELEM) {
                            set_msgs++;
                            if (!first_set) first_set = t;
                            last_set = t;
                        }
                        if (sub == NFT_MSG_NEWGEN) { gens++; last_gen = t; }
                    }
                }
            }
        }
    }
    printf("{\"addr_events\": %ld, \"set_msgs\": %ld, \"generations\": %ld, \"listener_overruns\": %ld, "
           "\"first_addr_ns\": %llu, \"last_addr_ns\": %llu, \"first_set_ns\": %llu, \"last_set_ns\": %llu, "
           "\"last_gen_ns\": %llu}\n",
           addr_events, set_msgs, gens, overruns, (unsigned long long)first_addr, (unsigned long long)last_addr,
           (unsigned long long)first_set, (unsigned long long)last_set, (unsigned long long)last_gen);
    return 0;
}

/* One JSON line per nftables generation, as it arrives: {"t": CLOCK_MONOTONIC ns, "pid": committing task}. */
static int gens(void) {
    struct mnl_socket *nft = open_sock(NETLINK_NETFILTER, 0, NFNLGRP_NFTABLES);
    static char buf[1 << 16];
    printf("{\"ready\": true}\n");
    fflush(stdout);
    while (1) {
        int n = recv(mnl_socket_get_fd(nft), buf, sizeof buf, 0);
        uint64_t t = now_ns();
        if (n < 0 && errno == ENOBUFS) {
            printf("{\"t\": %llu, \"overrun\": true}\n", (unsigned long long)t);
            fflush(stdout);
            continue;
        }
        if (n <= 0) return 1;
        for (struct nlmsghdr *nlh = (struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, n); nlh = mnl_nlmsg_next(nlh, &n)) {
            if ((nlh->nlmsg_type & 0xff) != NFT_MSG_NEWGEN) continue;
            struct nlattr *a;
            uint32_t pid = 0;
            mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
                if (mnl_attr_get_type(a) == NFTA_GEN_PROC_PID) pid = ntohl(mnl_attr_get_u32(a));
            }
            printf("{\"t\": %llu, \"pid\": %u}\n", (unsigned long long)t, pid);
            fflush(stdout);
        }
    }
}

int main(int argc, char **argv) {
    if (argc >= 5 && !strcmp(argv[1], "latency")) return latency(atoi(argv[2]), argv[3], atoi(argv[4]));
    if (argc >= 3 && !strcmp(argv[1], "watch")) return watch(atoi(argv[2]));
    if (argc >= 2 && !strcmp(argv[1], "gens")) return gens();
    fprintf(stderr, "usage: nlbench latency COUNT IFNAME PACE_US | nlbench watch QUIET_MS | nlbench gens\n");
    return 2;
}
