/* benchplugin: measures rnmd's plugin path from inside rnmd (a plugin), and a baseline from outside.
 *
 * As a plugin (cc -shared -fPIC ... -lmnl -lpthread, built by Benchmarks/run.py against the in-tree rnm_plugin.h;
 * loaded by rnmd, it runs in rnmd's process, so in rnmd's network namespace):
 * config {"mode": "latency" | "throughput", "set": "bench_v4", "table": "rnm", "out": "/path/result.json",
 *         "count": N, "pace_us": P, "batch": B, "listen": false}
 *   latency     N times, P µs apart: t0 (CLOCK_MONOTONIC), set_apply ADD of one /32 (198.18.0.0/15), then
 *               wait for the nftables NEWSETELEM notification carrying that address, t1; then the same for
 *               REMOVE (DELSETELEM). The notifications are read from this plugin's own NFNLGRP_NFTABLES socket.
 *   throughput  N distinct addresses (172.16.0.0/12) added as fast as set_apply takes them, B changes a call,
 *               RNM_EAGAIN answered with wait_writable. The run ends when the kernel holds all N: with
 *               "listen": true a listener thread counts the set's NEWSETELEM keys (and the NEWGEN commits
 *               that carried them) until it has seen all N; otherwise (no nftables subscriber besides rnmd's
 *               own) the plugin asks the kernel for the last address added, every 0.5 ms, once its calls are
 *               done. Afterwards a dump of the set checks that all N are there. rnmd's reconciler and drift
 *               watcher threads' CPU times (schedstat, by thread name) are reported for the same window.
 *   The result is written as JSON to "out" (atomically: a temporary file renamed), then the plugin's health
 *   message becomes "done".
 *
 * As a program (cc -DBENCH_MAIN), the baselines, run in a namespace; the same listener, the same clock:
 *   benchplugin nft COUNT PACE_US TABLE SET          one `nft add element` / `nft delete element` per address
 *   benchplugin control COUNT PACE_US SOCKET SET     rnmd's control socket: one `set add` / `set del` request
 *                                                    per address on one connection (what `rnmctl set add` sends)
 *   Both print the same JSON as the latency mode to stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef BENCH_MAIN
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
extern char **environ;
#else
#include <rnm_plugin.h>
#endif

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

/* ------------------------------------------------------------------------------------------------------ */
/* The nftables notification listener. */

struct listener {
    struct mnl_socket *nl;
    int fd;
    char set[64];
    char *buf;
    size_t buf_len;
    long overruns;
};

static int listener_open(struct listener *l, const char *set, int rcvbuf) {
    memset(l, 0, sizeof *l);
    snprintf(l->set, sizeof l->set, "%s", set);
    l->nl = mnl_socket_open(NETLINK_NETFILTER);
    if (!l->nl) return -1;
    if (mnl_socket_bind(l->nl, 0, MNL_SOCKET_AUTOPID) < 0) goto fail;
    int group = NFNLGRP_NFTABLES;
    if (mnl_socket_setsockopt(l->nl, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) < 0) goto fail;
    if (setsockopt(mnl_socket_get_fd(l->nl), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0) goto fail;
    l->fd = mnl_socket_get_fd(l->nl);
    l->buf_len = 1 << 20;
    l->buf = malloc(l->buf_len);
    if (!l->buf) goto fail;
    return 0;
fail:
    mnl_socket_close(l->nl);
    l->nl = NULL;
    return -1;
}

static void listener_close(struct listener *l) {
    if (l->nl) mnl_socket_close(l->nl);
    free(l->buf);
    l->nl = NULL;
    l->buf = NULL;
}

/* What one notification datagram held, for the callers below. */
enum { EV_NEWELEM = 1, EV_DELELEM = 2, EV_GEN = 3 };
typedef void (*event_fn)(void *ctx, int kind, uint32_t key_be, uint64_t t);

/* Calls fn for every IPv4 key of a NEWSETELEM/DELSETELEM message of the listener's set. */
static void elements_of(const struct listener *l, const struct nlmsghdr *nlh, int kind, uint64_t t, event_fn fn,
                        void *ctx) {
    const struct nlattr *a;
    int ours = 0;
    mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
        if (mnl_attr_get_type(a) == NFTA_SET_ELEM_LIST_SET && !strcmp(mnl_attr_get_str(a), l->set)) ours = 1;
    }
    if (!ours) return;
    mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
        if (mnl_attr_get_type(a) != NFTA_SET_ELEM_LIST_ELEMENTS) continue;
        const struct nlattr *elem, *field, *data;
        mnl_attr_for_each_nested(elem, a) {
            mnl_attr_for_each_nested(field, elem) {
                if (mnl_attr_get_type(field) != NFTA_SET_ELEM_KEY) continue;
                mnl_attr_for_each_nested(data, field) {
                    if (mnl_attr_get_type(data) == NFTA_DATA_VALUE && mnl_attr_get_payload_len(data) == 4) {
                        uint32_t key;
                        memcpy(&key, mnl_attr_get_payload(data), 4);
                        fn(ctx, kind, key, t);
                    }
                }
            }
        }
    }
}

/* Waits up to timeout_ms for notifications and hands each one to fn. 1 if something was read, 0 on a
 * timeout, -1 on an overrun (the kernel dropped notifications: ENOBUFS). The timestamp is taken right after
 * the read returned. */
static int listener_poll(struct listener *l, int timeout_ms, event_fn fn, void *ctx) {
    struct pollfd p = {l->fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return 0;
    int got = 0;
    for (;;) {
        ssize_t n = recv(l->fd, l->buf, l->buf_len, MSG_DONTWAIT);
        uint64_t t = now_ns();
        if (n < 0 && errno == ENOBUFS) {
            l->overruns++;
            return -1;
        }
        if (n <= 0) return got;
        got = 1;
        int len = (int)n;
        for (const struct nlmsghdr *nlh = (struct nlmsghdr *)l->buf; mnl_nlmsg_ok(nlh, len);
             nlh = mnl_nlmsg_next(nlh, &len)) {
            if (nlh->nlmsg_type >> 8 != NFNL_SUBSYS_NFTABLES) continue;
            switch (nlh->nlmsg_type & 0xff) {
            case NFT_MSG_NEWSETELEM: elements_of(l, nlh, EV_NEWELEM, t, fn, ctx); break;
            case NFT_MSG_DELSETELEM: elements_of(l, nlh, EV_DELELEM, t, fn, ctx); break;
            case NFT_MSG_NEWGEN: fn(ctx, EV_GEN, 0, t); break;
            default: break;
            }
        }
    }
}

/* Waiting for one element to be notified. */
struct wait_one {
    int kind;
    uint32_t key;
    uint64_t t;
};

static void on_wait_one(void *ctx, int kind, uint32_t key, uint64_t t) {
    struct wait_one *w = ctx;
    if (!w->t && kind == w->kind && key == w->key) w->t = t;
}

/* Time (ns) at which the notification of kind for key arrived, or 0 after 2 s (missed). */
static uint64_t wait_for(struct listener *l, int kind, uint32_t key, const atomic_int *stop) {
    struct wait_one w = {kind, key, 0};
    uint64_t deadline = now_ns() + 2000000000ull;
    while (!w.t && now_ns() < deadline && !(stop && atomic_load(stop))) listener_poll(l, 50, on_wait_one, &w);
    return w.t;
}

/* Counts the elements of the set in table inet TABLE whose key lies in [lo, hi] (host order), by a dump. */
__attribute__((unused)) static long count_in_set(const char *table, const char *set, uint32_t lo, uint32_t hi) {
    struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
    if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        if (nl) mnl_socket_close(nl);
        return -1;
    }
    char *buf = malloc(1 << 20);
    if (!buf) return mnl_socket_close(nl), -1;
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = 1;
    struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof *g);
    g->nfgen_family = NFPROTO_INET;
    g->version = NFNETLINK_V0;
    g->res_id = 0;
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, table);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, set);
    long count = 0;
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) count = -1;
    while (count >= 0) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, 1 << 20);
        if (n <= 0) { count = -1; break; }
        int len = (int)n, done = 0;
        for (nlh = (struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
            if (nlh->nlmsg_type == NLMSG_DONE) { done = 1; break; }
            if (nlh->nlmsg_type == NLMSG_ERROR) { count = -1; break; }
            /* A dump answers with NEWSETELEM messages: count their keys in range. */
            const struct nlattr *a, *elem, *field, *data;
            mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg)) {
                if (mnl_attr_get_type(a) != NFTA_SET_ELEM_LIST_ELEMENTS) continue;
                mnl_attr_for_each_nested(elem, a) {
                    mnl_attr_for_each_nested(field, elem) {
                        if (mnl_attr_get_type(field) != NFTA_SET_ELEM_KEY) continue;
                        mnl_attr_for_each_nested(data, field) {
                            if (mnl_attr_get_type(data) != NFTA_DATA_VALUE || mnl_attr_get_payload_len(data) != 4) continue;
                            uint32_t key;
                            memcpy(&key, mnl_attr_get_payload(data), 4);
                            key = ntohl(key);
                            if (key >= lo && key <= hi) count++;
                        }
                    }
                }
            }
        }
        if (done) break;
    }
    free(buf);
    mnl_socket_close(nl);
    return count;
}

/* Whether the set holds one IPv4 address: a GETSETELEM request for that key (not a dump). 1 yes, 0 no
 * (ENOENT), -1 on any other error. */
__attribute__((unused)) static int has_element(struct mnl_socket *nl, const char *table, const char *set, uint32_t key_be) {
    char buf[8192];
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETSETELEM;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = (uint32_t)now_ns();
    struct nfgenmsg *g = mnl_nlmsg_put_extra_header(nlh, sizeof *g);
    g->nfgen_family = NFPROTO_INET;
    g->version = NFNETLINK_V0;
    g->res_id = 0;
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, table);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, set);
    struct nlattr *list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    struct nlattr *elem = mnl_attr_nest_start(nlh, NFTA_LIST_ELEM);
    struct nlattr *k = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_KEY);
    mnl_attr_put(nlh, NFTA_DATA_VALUE, 4, &key_be);
    mnl_attr_nest_end(nlh, k);
    mnl_attr_nest_end(nlh, elem);
    mnl_attr_nest_end(nlh, list);
    uint32_t seq = nlh->nlmsg_seq;
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) return -1;
    int found = 0;
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof buf);
        if (n <= 0) return -1;
        int len = (int)n;
        for (nlh = (struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
            if (nlh->nlmsg_seq != seq) continue;
            if (nlh->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
                if (e->error == 0) return found;
                return e->error == -ENOENT ? 0 : -1;
            }
            if ((nlh->nlmsg_type & 0xff) == NFT_MSG_NEWSETELEM) found = 1;
        }
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Results. */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(uint64_t *v, int n, double q) {
    if (!n) return -1;
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    return v[(size_t)(q * (n - 1))] / 1000.0;
}

static void put_dist(FILE *f, const char *name, uint64_t *v, int n) {
    fprintf(f, "\"%s\": {\"n\": %d", name, n);
    if (n) {
        fprintf(f, ", \"samples_us\": [");
        for (int i = 0; i < n; i++) fprintf(f, "%s%.1f", i ? ", " : "", v[i] / 1000.0);
        fprintf(f, "]");
        fprintf(f, ", \"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"max_us\": %.1f", pct_us(v, n, 0.5),
                pct_us(v, n, 0.9), pct_us(v, n, 0.99), pct_us(v, n, 1.0));
    }
    fprintf(f, "}");
}

/* The latency samples of one run, add and remove apart. */
struct lat {
    int count, pace_us;
    uint64_t *add, *del, *call;
    int n_add, n_del, n_call, missed_add, missed_del;
};

static int lat_init(struct lat *r, int count, int pace_us) {
    memset(r, 0, sizeof *r);
    r->count = count, r->pace_us = pace_us;
    r->add = calloc((size_t)count, sizeof(uint64_t));
    r->del = calloc((size_t)count, sizeof(uint64_t));
    r->call = calloc(2 * (size_t)count, sizeof(uint64_t));
    return r->add && r->del && r->call ? 0 : -1;
}

static void lat_write(FILE *f, const char *tool, struct lat *r, long overruns) {
    fprintf(f, "{\"mode\": \"latency\", \"tool\": \"%s\", \"count\": %d, \"pace_us\": %d, \"missed_add\": %d, "
               "\"missed_remove\": %d, \"overruns\": %ld, ", tool, r->count, r->pace_us, r->missed_add, r->missed_del, overruns);
    /* The samples of add and remove are kept in order (put_dist sorts a copy's worth: print first). */
    put_dist(f, "add", r->add, r->n_add);
    fprintf(f, ", ");
    put_dist(f, "remove", r->del, r->n_del);
    fprintf(f, ", ");
    put_dist(f, "call", r->call, r->n_call);
    fprintf(f, "}\n");
}

static uint32_t latency_addr(int i) { return htonl(0xC6120000u | (uint32_t)(i + 1)); /* 198.18.0.0/15 */ }

#ifndef BENCH_MAIN
/* ------------------------------------------------------------------------------------------------------ */
/* The plugin. */

struct rnm_instance {
    const rnm_host_api *api;
    rnm_host *h;
    char mode[16], set[64], table[64], out[512];
    long count, pace_us, batch, listen;
    pthread_t runner, counter;
    int running;
    atomic_int stop;
    /* Throughput: written by the counter thread, read after it is joined. */
    long seen, gens, max_per_gen, per_gen_now;
    uint64_t t_done, t_last_gen;
    struct listener tl;
};

/* Where the value of "key" starts in a flat JSON object (hand scan; the host passes compact JSON). */
static const char *json_value(const char *json, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p) {
        snprintf(pat, sizeof pat, "\"%s\"", key);
        if (!(p = strstr(json, pat))) return NULL;
    }
    p += strlen(pat);
    return p + strspn(p, " \t\r\n:");
}

static int json_string(const char *json, const char *key, char *out, size_t len) {
    const char *v = json_value(json, key);
    if (!v || *v != '"') return -1;
    const char *end = strchr(v + 1, '"');
    if (!end || (size_t)(end - v - 1) >= len) return -1;
    memcpy(out, v + 1, (size_t)(end - v - 1));
    out[end - v - 1] = 0;
    return 0;
}

static long json_long(const char *json, const char *key, long fallback) {
    const char *v = json_value(json, key);
    return v ? strtol(v, NULL, 10) : fallback;
}

static void log_msg(rnm_instance *p, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void log_msg(rnm_instance *p, int level, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->api->log(p->h, level, msg);
}

static rnm_status create(const rnm_host_api *api, rnm_host *h, const char *cfg, rnm_instance **out, char *err,
                         size_t len) {
    rnm_instance *p = calloc(1, sizeof *p);
    if (!p) return snprintf(err, len, "out of memory"), RNM_EINVAL;
    p->api = api, p->h = h;
    snprintf(p->table, sizeof p->table, "rnm");
    json_string(cfg, "table", p->table, sizeof p->table);
    if (json_string(cfg, "mode", p->mode, sizeof p->mode) || (strcmp(p->mode, "latency") && strcmp(p->mode, "throughput")))
        return snprintf(err, len, "config: \"mode\" must be \"latency\" or \"throughput\""), free(p), RNM_EINVAL;
    if (json_string(cfg, "set", p->set, sizeof p->set))
        return snprintf(err, len, "config: \"set\" is missing"), free(p), RNM_EINVAL;
    if (json_string(cfg, "out", p->out, sizeof p->out) || p->out[0] != '/')
        return snprintf(err, len, "config: \"out\" must be an absolute path"), free(p), RNM_EINVAL;
    p->count = json_long(cfg, "count", 1000);
    p->pace_us = json_long(cfg, "pace_us", 5000);
    p->batch = json_long(cfg, "batch", 1);
    const char *listen = json_value(cfg, "listen");
    p->listen = listen && !strncmp(listen, "true", 4);
    if (p->count < 1 || p->count > (1 << 20) || p->batch < 1 || p->batch > (long)RNM_MAX_CHANGES || p->pace_us < 0)
        return snprintf(err, len, "config: count 1..1048576, batch >= 1, pace_us >= 0"), free(p), RNM_EINVAL;
    atomic_init(&p->stop, 0);
    *out = p;
    return RNM_OK;
}

/* Writes the result file (a temporary file renamed: whoever waits for it never reads half of it). */
static FILE *result_open(rnm_instance *p, char *tmp, size_t len) {
    snprintf(tmp, len, "%s.tmp", p->out);
    return fopen(tmp, "w");
}

static void result_commit(rnm_instance *p, FILE *f, const char *tmp) {
    int bad = ferror(f);
    if (fclose(f) || bad || rename(tmp, p->out)) {
        log_msg(p, RNM_LOG_ERR, "cannot write %s: %s", p->out, strerror(errno));
        p->api->set_health(p->h, RNM_HEALTH_FAILED, "cannot write the result");
        return;
    }
    p->api->set_health(p->h, RNM_HEALTH_OK, "done");
}

/* set_apply until taken: RNM_EAGAIN means nothing was taken, so wait for the host to drain and retry. */
static rnm_status apply(rnm_instance *p, const rnm_set_change *c, size_t n, long *eagain, uint64_t *waited_ns) {
    rnm_status rc;
    while ((rc = p->api->set_apply(p->h, p->set, c, n)) == RNM_EAGAIN) {
        (*eagain)++;
        uint64_t t = now_ns();
        rnm_status w = p->api->wait_writable(p->h, 1000);
        *waited_ns += now_ns() - t;
        if (w == RNM_ESHUTDOWN) return w;
    }
    return rc;
}

static void one_change(rnm_set_change *c, uint32_t op, uint32_t addr_be) {
    memset(c, 0, sizeof *c);
    c->op = op;
    c->addr.family = 4;
    c->addr.prefix_len = 32;
    memcpy(c->addr.bytes, &addr_be, 4);
}

/* Waits (up to 30 s) until rnmd has loaded its table and the granted set exists: the plugin starts with
 * rnmd, before its first commit, and the measurements must not include that. */
static int wait_for_set(rnm_instance *p) {
    for (int i = 0; i < 3000 && !atomic_load(&p->stop); i++) {
        if (count_in_set(p->table, p->set, 0, 0) >= 0) return sleep_us(200000), 0;
        sleep_us(10000);
    }
    p->api->set_health(p->h, RNM_HEALTH_FAILED, "the set never appeared in the kernel");
    return -1;
}

static void *run_latency(void *arg) {
    rnm_instance *p = arg;
    struct listener l;
    struct lat r;
    long eagain = 0;
    uint64_t waited = 0;
    if (listener_open(&l, p->set, 4 << 20) || lat_init(&r, (int)p->count, (int)p->pace_us)) {
        p->api->set_health(p->h, RNM_HEALTH_FAILED, "cannot listen to nftables notifications");
        return NULL;
    }
    if (wait_for_set(p)) goto out;
    p->api->set_health(p->h, RNM_HEALTH_OK, "measuring latency");
    for (int i = 0; i < p->count && !atomic_load(&p->stop); i++) {
        uint32_t addr = latency_addr(i);
        for (int del = 0; del < 2 && !atomic_load(&p->stop); del++) {
            rnm_set_change c;
            one_change(&c, del ? RNM_OP_REMOVE : RNM_OP_ADD, addr);
            uint64_t t0 = now_ns();
            rnm_status rc = apply(p, &c, 1, &eagain, &waited);
            uint64_t tc = now_ns();
            if (rc != RNM_OK) {
                log_msg(p, RNM_LOG_ERR, "set_apply: %d", (int)rc);
                p->api->set_health(p->h, RNM_HEALTH_FAILED, "set_apply failed");
                goto out;
            }
            r.call[r.n_call++] = tc - t0;
            uint64_t t1 = wait_for(&l, del ? EV_DELELEM : EV_NEWELEM, addr, &p->stop);
            if (!t1 && del) r.missed_del++;
            else if (!t1) r.missed_add++;
            else if (del) r.del[r.n_del++] = t1 - t0;
            else r.add[r.n_add++] = t1 - t0;
            sleep_us(p->pace_us);
        }
    }
    if (!atomic_load(&p->stop)) {
        char tmp[600];
        FILE *f = result_open(p, tmp, sizeof tmp);
        if (f) {
            lat_write(f, "plugin", &r, l.overruns);
            result_commit(p, f, tmp);
        }
    }
out:
    listener_close(&l);
    free(r.add), free(r.del), free(r.call);
    (void)eagain, (void)waited;
    return NULL;
}

/* Throughput: the counter thread. Counts the set's NEWSETELEM keys in 172.16.0.0/12 and the commits. */
#define TP_BASE 0xAC100000u /* 172.16.0.0/12 */
#define TP_LAST 0xAC1FFFFFu

static void on_count(void *ctx, int kind, uint32_t key, uint64_t t) {
    rnm_instance *p = ctx;
    if (kind == EV_GEN) {
        /* The set's elements are notified before the NEWGEN of their transaction: count per commit. */
        if (p->per_gen_now) {
            p->gens++;
            if (p->per_gen_now > p->max_per_gen) p->max_per_gen = p->per_gen_now;
            p->t_last_gen = t;
        }
        p->per_gen_now = 0;
        return;
    }
    uint32_t k = ntohl(key);
    if (kind != EV_NEWELEM || k < TP_BASE || k > TP_LAST) return;
    p->per_gen_now++;
    if (++p->seen == p->count) p->t_done = t;
}

static void *run_counter(void *arg) {
    rnm_instance *p = arg;
    uint64_t deadline = 0;
    while (!atomic_load(&p->stop)) {
        int rc = listener_poll(&p->tl, 50, on_count, p);
        if (rc < 0) break; /* an overrun: counting is no longer exact; the runner polls the set instead */
        /* Done: all elements seen and the NEWGEN of the last transaction too (or 1 s without it). */
        if (p->t_done && !p->per_gen_now) break;
        if (p->t_done && !deadline) deadline = now_ns() + 1000000000ull;
        if (deadline && now_ns() > deadline) break;
    }
    return NULL;
}

/* CPU time (ns, from schedstat) of this process's threads named `comm` (rnmd names its threads), or 0. */
static uint64_t thread_cpu_ns(const char *comm) {
    DIR *d = opendir("/proc/self/task");
    uint64_t total = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[300], name[64] = "";
        unsigned long long ns = 0;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (!fgets(name, sizeof name, f)) name[0] = 0;
        fclose(f);
        name[strcspn(name, "\n")] = 0;
        if (strcmp(name, comm)) continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
        if ((f = fopen(path, "r"))) {
            if (fscanf(f, "%llu", &ns) == 1) total += ns;
            fclose(f);
        }
    }
    if (d) closedir(d);
    return total;
}

static void *run_throughput(void *arg) {
    rnm_instance *p = arg;
    long eagain = 0, calls = 0;
    uint64_t waited = 0;
    size_t batch = (size_t)p->batch;
    rnm_set_change *c = calloc(batch, sizeof *c);
    if (!c || wait_for_set(p)) return free(c), NULL;
    if (p->listen) {
        if (listener_open(&p->tl, p->set, 256 << 20) || pthread_create(&p->counter, NULL, run_counter, p)) {
            p->api->set_health(p->h, RNM_HEALTH_FAILED, "cannot listen to nftables notifications");
            listener_close(&p->tl);
            free(c);
            return NULL;
        }
        sleep_us(100000); /* let the counter block in poll before the first call */
    }
    p->api->set_health(p->h, RNM_HEALTH_OK, "measuring throughput");
    struct timespec cpu0, cpu1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
    uint64_t rec0 = thread_cpu_ns("rnmd-reconcile"), watch0 = thread_cpu_ns("rnmd-nftwatch");
    uint64_t t0 = now_ns(), t_calls = 0;
    rnm_status rc = RNM_OK;
    for (long i = 0; i < p->count && !atomic_load(&p->stop); i += (long)batch) {
        size_t n = (size_t)(p->count - i) < batch ? (size_t)(p->count - i) : batch;
        for (size_t k = 0; k < n; k++) one_change(&c[k], RNM_OP_ADD, htonl(TP_BASE + (uint32_t)(i + (long)k)));
        rc = apply(p, c, n, &eagain, &waited);
        calls++;
        if (rc != RNM_OK) break;
    }
    t_calls = now_ns();
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
    double calls_cpu_ms = (cpu1.tv_sec - cpu0.tv_sec) * 1e3 + (cpu1.tv_nsec - cpu0.tv_nsec) / 1e6;
    if (rc != RNM_OK) {
        log_msg(p, RNM_LOG_ERR, "set_apply: %d", (int)rc);
        p->api->set_health(p->h, RNM_HEALTH_FAILED, "set_apply failed");
        atomic_store(&p->stop, 1);
    }
    uint64_t t_end = 0;
    int polled = 0;
    if (p->listen) {
        pthread_join(p->counter, NULL);
        t_end = p->t_done;
    }
    /* Without the listener (or after an overrun made its count inexact): ask the kernel, every 0.5 ms, for the
     * last address added. Calls are drained and committed in order, so once it is there all the others are. */
    if (!t_end && !atomic_load(&p->stop)) {
        polled = 1;
        struct mnl_socket *nl = mnl_socket_open(NETLINK_NETFILTER);
        if (nl && mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == 0) {
            uint64_t deadline = now_ns() + 120000000000ull;
            uint32_t last = htonl(TP_BASE + (uint32_t)(p->count - 1));
            while (!atomic_load(&p->stop) && now_ns() < deadline) {
                int got = has_element(nl, p->table, p->set, last);
                if (got < 0) break;
                if (got) {
                    t_end = now_ns();
                    break;
                }
                sleep_us(500);
            }
        }
        if (nl) mnl_socket_close(nl);
    }
    /* rnmd's threads' CPU time from the first call until completion was seen (to within 0.5 ms). */
    double rec_ms = (thread_cpu_ns("rnmd-reconcile") - rec0) / 1e6, watch_ms = (thread_cpu_ns("rnmd-nftwatch") - watch0) / 1e6;
    double cpu_window_ms = (now_ns() - t0) / 1e6;
    long present = atomic_load(&p->stop) ? -1 : count_in_set(p->table, p->set, TP_BASE, TP_LAST);
    if (!atomic_load(&p->stop)) {
        char tmp[600];
        FILE *f = result_open(p, tmp, sizeof tmp);
        if (f) {
            double secs = t_end ? (t_end - t0) / 1e9 : -1;
            fprintf(f, "{\"mode\": \"throughput\", \"tool\": \"plugin\", \"listen\": %s, \"batch\": %ld, \"count\": %ld, "
                       "\"calls\": %ld, \"eagain\": %ld, \"waited_ms\": %.2f, \"calls_ms\": %.2f, \"calls_cpu_ms\": %.2f, \"elapsed_ms\": %.2f, "
                       "\"adds_per_s\": %.0f, \"notified_transactions\": %ld, \"notified_max_per_transaction\": %ld, "
                       "\"notified\": %ld, \"overruns\": %ld, \"polled\": %d, \"present\": %ld, \"reconciler_cpu_ms\": %.1f, "
                       "\"nftwatch_cpu_ms\": %.1f, \"cpu_window_ms\": %.1f}\n",
                    p->listen ? "true" : "false", p->batch, p->count, calls, eagain, waited / 1e6, (t_calls - t0) / 1e6, calls_cpu_ms,
                    t_end ? (t_end - t0) / 1e6 : -1.0, t_end ? p->count / secs : -1.0, p->gens, p->max_per_gen, p->seen,
                    p->tl.overruns, polled, present, rec_ms, watch_ms, cpu_window_ms);
            result_commit(p, f, tmp);
        }
    }
    listener_close(&p->tl);
    free(c);
    return NULL;
}

static rnm_status start(rnm_instance *p) {
    int rc = pthread_create(&p->runner, NULL, strcmp(p->mode, "latency") ? run_throughput : run_latency, p);
    if (rc) return -rc;
    p->running = 1;
    return RNM_OK;
}

static void stop(rnm_instance *p) {
    atomic_store(&p->stop, 1);
    if (p->running) pthread_join(p->runner, NULL);
    p->running = 0;
}

static void destroy(rnm_instance *p) { free(p); }

static const rnm_plugin_descriptor descriptor = {
    .struct_size = sizeof(rnm_plugin_descriptor), .magic = RNM_PLUGIN_MAGIC, .abi_major = RNM_ABI_MAJOR,
    .abi_minor = RNM_ABI_MINOR, .name = "benchplugin", .version = "1.0.0", .build_info = NULL,
    .create = create, .start = start, .reconfigure = NULL, .stop = stop, .destroy = destroy};

const rnm_plugin_descriptor *rnm_plugin_entry_v1(uint32_t major, uint32_t minor) {
    (void)minor;
    return major == RNM_ABI_MAJOR ? &descriptor : NULL;
}

#else
/* ------------------------------------------------------------------------------------------------------ */
/* The baselines: a program. */

static void addr_text(uint32_t addr_be, char *buf, size_t len) { inet_ntop(AF_INET, &addr_be, buf, (socklen_t)len); }

/* One `nft add/delete element inet TABLE SET { ADDR }`, started (posix_spawn) at t0. */
static pid_t spawn_nft(const char *op, const char *table, const char *set, const char *addr) {
    char elem[64];
    snprintf(elem, sizeof elem, "{ %s }", addr);
    char *argv[] = {"nft", (char *)op, "element", "inet", (char *)table, (char *)set, elem, NULL};
    pid_t pid;
    return posix_spawnp(&pid, "nft", NULL, NULL, argv, environ) ? -1 : pid;
}

/* Reads one reply line from the control socket; 0 if it says "ok":true. */
static int control_reply(int fd) {
    char line[4096];
    size_t n = 0;
    while (n < sizeof line - 1) {
        ssize_t r = read(fd, line + n, 1);
        if (r <= 0) return -1;
        if (line[n++] == '\n') break;
    }
    line[n] = 0;
    return strstr(line, "\"ok\":true") ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 6 || (strcmp(argv[1], "nft") && strcmp(argv[1], "control"))) {
        fprintf(stderr, "usage: benchplugin nft COUNT PACE_US TABLE SET | benchplugin control COUNT PACE_US SOCKET SET\n");
        return 2;
    }
    int nft = !strcmp(argv[1], "nft"), count = atoi(argv[2]), pace = atoi(argv[3]);
    const char *target = argv[4], *set = argv[5];
    struct listener l;
    struct lat r;
    if (listener_open(&l, set, 4 << 20) || lat_init(&r, count, pace)) { perror("listener"); return 1; }
    int fd = -1;
    if (!nft) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", target);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { perror(target); return 1; }
    }
    for (int i = 0; i < count; i++) {
        uint32_t addr = latency_addr(i);
        char text[32];
        addr_text(addr, text, sizeof text);
        for (int del = 0; del < 2; del++) {
            uint64_t t0 = now_ns(), tc;
            pid_t pid = -1;
            if (nft) {
                pid = spawn_nft(del ? "delete" : "add", target, set, text);
                if (pid < 0) { perror("nft"); return 1; }
                tc = now_ns();
            } else {
                char req[256];
                int len = snprintf(req, sizeof req, "{\"cmd\":\"set %s\",\"set\":\"%s\",\"elements\":[\"%s\"]}\n",
                                   del ? "del" : "add", set, text);
                if (write(fd, req, (size_t)len) != len) { perror("control socket"); return 1; }
                tc = now_ns();
            }
            r.call[r.n_call++] = tc - t0;
            uint64_t t1 = wait_for(&l, del ? EV_DELELEM : EV_NEWELEM, addr, NULL);
            if (!t1 && del) r.missed_del++;
            else if (!t1) r.missed_add++;
            else if (del) r.del[r.n_del++] = t1 - t0;
            else r.add[r.n_add++] = t1 - t0;
            if (nft) {
                int status;
                if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
                    fprintf(stderr, "nft %s element failed\n", del ? "delete" : "add");
                    return 1;
                }
            } else if (control_reply(fd)) {
                fprintf(stderr, "control request refused\n");
                return 1;
            }
            sleep_us(pace);
        }
    }
    lat_write(stdout, nft ? "nft" : "control", &r, l.overruns);
    listener_close(&l);
    return 0;
}
#endif
