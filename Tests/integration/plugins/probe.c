/* probe.c - the integration tests' configurable plugin, and (with -D) its broken variants.
 *
 * Config (all optional):
 *   "tag": "a"                   name used in the trace file (default "probe")
 *   "trace": "/path"             every lifecycle call appends "<tag> <call>" (and "<tag> applied <status>")
 *   "set": "allow_v4", "addresses": ["192.0.2.1", ...], "timeout_ms": 0
 *                                contributed from the plugin's thread (set_apply, or set_replace with
 *                                "replace": true), waiting on RNM_EAGAIN
 *   "health": "ok" | "degraded" | "failed", "health_message": "..."   reported after contributing
 *   "log": "text"                logged at start
 *   "fail_create": "message"     create fails with this message
 *   "fail_start": true           start fails
 *   "fail_reconfigure": true     reconfigure fails (PROBE_RECONFIGURE builds)
 *   "reconfigure_ok": true       reconfigure returns RNM_OK even when contributing failed (reported as health)
 *   "hang": "create" | "start" | "stop" | "reconfigure" | "destroy"   that call never returns
 *   "sleep_create_ms", "sleep_start_ms", "sleep_reconfigure_ms", "sleep_stop_ms": 2000
 *                                that call takes this long (slow but legal, within the host's watchdog)
 *   "in_start": true             contribute from start() itself, before it returns (one call, no waiting),
 *                                instead of from a thread of the plugin's own
 *
 * Variants, chosen with -D when compiling:
 *   PROBE_HEADER="path"          build against another copy of rnm_plugin.h (the frozen v1.0 one)
 *   PROBE_RECONFIGURE            provide reconfigure (takes a new config without a restart)
 *   PROBE_NAME, PROBE_VERSION    descriptor strings
 *   DESC_MAGIC, DESC_ABI_MAJOR, DESC_ABI_MINOR, DESC_STRUCT_SIZE, DESC_BUILD_INFO   descriptor fields
 *   NO_CREATE                    descriptor without create
 *   ENTRY_RETURNS_NULL           the entry point returns no descriptor
 *   ENTRY_SYMBOL=name            export the entry point under another name (so rnm_plugin_entry_v1 is missing)
 *   FUTURE_FIELD                 a descriptor from a later 1.x: an extra trailing field, larger struct_size
 */
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef PROBE_HEADER
#include PROBE_HEADER
#else
#include <rnm_plugin.h>
#endif
#include "jscan.h"

#define MAX_ADDRS 4096

typedef struct config {
    char tag[64], trace[512], set[64], health[16], health_message[128], log[256], fail_create[256], hang[16];
    int replace, fail_start, fail_reconfigure, reconfigure_ok, in_start;
    long long sleep_create_ms, sleep_start_ms, sleep_reconfigure_ms, sleep_stop_ms;
    unsigned long long timeout_ms;
    size_t n;
    rnm_addr addrs[MAX_ADDRS];
} config;

struct rnm_instance {
    const rnm_host_api *api;
    rnm_host *h;
    pthread_t thread;
    int started;
    config cfg;
};

static void hang_forever(void) {
    for (;;)
        sleep(3600);
}

/* Sleeps ms milliseconds, through signals. */
static void sleep_ms(long long ms) {
    struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};
    while (ms > 0 && nanosleep(&left, &left) != 0) {
    }
}

static void trace(const config *c, const char *what, int status, int with_status) {
    char line[256];
    int fd, n;
    if (!c->trace[0])
        return;
    n = with_status ? snprintf(line, sizeof line, "%s %s %d\n", c->tag, what, status)
                    : snprintf(line, sizeof line, "%s %s\n", c->tag, what);
    if ((fd = open(c->trace, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) >= 0) {
        if (write(fd, line, (size_t)n) != n) { /* best effort */ }
        close(fd);
    }
}

struct parse_ctx {
    const rnm_host_api *api;
    config *c;
    char bad[128];
};

static int add_address(const char *text, void *arg) {
    struct parse_ctx *ctx = arg;
    if (ctx->c->n == MAX_ADDRS || ctx->api->addr_parse(text, &ctx->c->addrs[ctx->c->n]) != RNM_OK) {
        snprintf(ctx->bad, sizeof ctx->bad, "%s", text);
        return 1;
    }
    ctx->c->n++;
    return 0;
}

/* Parses a config; on failure writes the reason into err and returns nonzero. */
static int parse(const rnm_host_api *api, const char *json, config *c, char *err, size_t len) {
    struct parse_ctx ctx = {api, c, ""};
    memset(c, 0, sizeof *c);
    if (!jscan_string(json, "tag", c->tag, sizeof c->tag))
        snprintf(c->tag, sizeof c->tag, "probe");
    jscan_string(json, "trace", c->trace, sizeof c->trace);
    jscan_string(json, "set", c->set, sizeof c->set);
    jscan_string(json, "health", c->health, sizeof c->health);
    jscan_string(json, "health_message", c->health_message, sizeof c->health_message);
    jscan_string(json, "log", c->log, sizeof c->log);
    jscan_string(json, "fail_create", c->fail_create, sizeof c->fail_create);
    jscan_string(json, "hang", c->hang, sizeof c->hang);
    c->replace = jscan_true(json, "replace");
    c->fail_start = jscan_true(json, "fail_start");
    c->fail_reconfigure = jscan_true(json, "fail_reconfigure");
    c->in_start = jscan_true(json, "in_start");
    c->reconfigure_ok = jscan_true(json, "reconfigure_ok");
    c->sleep_create_ms = jscan_number(json, "sleep_create_ms", 0);
    c->sleep_start_ms = jscan_number(json, "sleep_start_ms", 0);
    c->sleep_reconfigure_ms = jscan_number(json, "sleep_reconfigure_ms", 0);
    c->sleep_stop_ms = jscan_number(json, "sleep_stop_ms", 0);
    c->timeout_ms = (unsigned long long)jscan_number(json, "timeout_ms", 0);
    if (jscan_strings(json, "addresses", add_address, &ctx) < 0) {
        snprintf(err, len, "probe: bad address \"%s\"", ctx.bad);
        return 1;
    }
    if (c->n > 0 && !c->set[0]) {
        snprintf(err, len, "probe: \"addresses\" without \"set\"");
        return 1;
    }
    return 0;
}

/* Contributes the configured addresses; a full queue took nothing, so wait and try again. may_wait: only on
 * the plugin's own threads, as wait_writable requires; from start() or reconfigure() a full queue is an error. */
static rnm_status contribute(rnm_instance *p, int may_wait) {
    rnm_status rc;
    rnm_set_change *changes;
    if (!p->cfg.set[0])
        return RNM_OK;
    if (p->cfg.replace) {
        while ((rc = p->api->set_replace(p->h, p->cfg.set, p->cfg.addrs, p->cfg.n, p->cfg.timeout_ms)) == RNM_EAGAIN
               && may_wait && p->api->wait_writable(p->h, 1000) != RNM_ESHUTDOWN) {
        }
        return rc;
    }
    if (!(changes = calloc(p->cfg.n + 1, sizeof *changes)))
        return RNM_EINVAL;
    for (size_t i = 0; i < p->cfg.n; i++)
        changes[i] = (rnm_set_change){.op = RNM_OP_ADD, .timeout_ms = p->cfg.timeout_ms, .addr = p->cfg.addrs[i]};
    while ((rc = p->api->set_apply(p->h, p->cfg.set, changes, p->cfg.n)) == RNM_EAGAIN
           && may_wait && p->api->wait_writable(p->h, 1000) != RNM_ESHUTDOWN) {
    }
    free(changes);
    return rc;
}

static void report_health(rnm_instance *p, rnm_status rc) {
    char message[192];
    int state = RNM_HEALTH_OK;
    if (strcmp(p->cfg.health, "degraded") == 0)
        state = RNM_HEALTH_DEGRADED;
    else if (strcmp(p->cfg.health, "failed") == 0 || rc != RNM_OK)
        state = RNM_HEALTH_FAILED;
    if (p->cfg.health_message[0])
        snprintf(message, sizeof message, "%s", p->cfg.health_message);
    else
        snprintf(message, sizeof message, "%zu addresses, status %d", p->cfg.n, (int)rc);
    p->api->set_health(p->h, state, message);
}

static void *run(void *arg) {
    rnm_instance *p = arg;
    rnm_status rc = contribute(p, 1);
    trace(&p->cfg, "applied", rc, 1);
    report_health(p, rc);
    return NULL;
}

__attribute__((unused)) /* NO_CREATE builds leave it out of the descriptor */
static rnm_status probe_create(const rnm_host_api *api, rnm_host *h, const char *json, rnm_instance **out,
                               char *err, size_t len) {
    rnm_instance *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, len, "probe: out of memory");
        return RNM_EINVAL;
    }
    if (parse(api, json, &p->cfg, err, len)) {
        free(p);
        return RNM_EINVAL;
    }
    p->api = api;
    p->h = h;
    trace(&p->cfg, "create", 0, 0);
    sleep_ms(p->cfg.sleep_create_ms);
    if (strcmp(p->cfg.hang, "create") == 0)
        hang_forever();
    if (p->cfg.fail_create[0]) {
        snprintf(err, len, "%s", p->cfg.fail_create);
        free(p);
        return RNM_EINVAL;
    }
    *out = p;
    return RNM_OK;
}

static rnm_status probe_start(rnm_instance *p) {
    trace(&p->cfg, "start", 0, 0);
    sleep_ms(p->cfg.sleep_start_ms);
    if (strcmp(p->cfg.hang, "start") == 0)
        hang_forever();
    if (p->cfg.fail_start)
        return RNM_EINVAL;
    if (p->cfg.log[0])
        p->api->log(p->h, RNM_LOG_NOTICE, p->cfg.log);
    if (p->cfg.in_start) {
        rnm_status rc = contribute(p, 0);
        trace(&p->cfg, "applied", rc, 1);
        report_health(p, rc);
        return RNM_OK;
    }
    if (pthread_create(&p->thread, NULL, run, p) != 0)
        return RNM_EINVAL;
    p->started = 1;
    return RNM_OK;
}

static void join(rnm_instance *p) {
    if (p->started)
        pthread_join(p->thread, NULL);
    p->started = 0;
}

#ifdef PROBE_RECONFIGURE
static rnm_status probe_reconfigure(rnm_instance *p, const char *json, char *err, size_t len) {
    config *next = malloc(sizeof *next);
    rnm_status rc;
    if (!next || parse(p->api, json, next, err, len)) {
        free(next);
        return RNM_EINVAL;
    }
    trace(next, "reconfigure", 0, 0);
    sleep_ms(next->sleep_reconfigure_ms);
    if (strcmp(next->hang, "reconfigure") == 0)
        hang_forever();
    if (next->fail_reconfigure) {
        snprintf(err, len, "probe: reconfigure refused");
        free(next);
        return RNM_EINVAL;
    }
    join(p);
    /* Moving to another set: give up the old contribution first. */
    if (p->cfg.set[0] && strcmp(p->cfg.set, next->set) != 0)
        p->api->set_replace(p->h, p->cfg.set, p->cfg.addrs, 0, 0);
    p->cfg = *next;
    free(next);
    p->cfg.replace = 1;
    rc = contribute(p, 0);
    trace(&p->cfg, "applied", rc, 1);
    report_health(p, rc);
    return p->cfg.reconfigure_ok ? RNM_OK : rc;
}
#define PROBE_RECONFIGURE_FN probe_reconfigure
#else
#define PROBE_RECONFIGURE_FN NULL
#endif

static void probe_stop(rnm_instance *p) {
    trace(&p->cfg, "stop", 0, 0);
    sleep_ms(p->cfg.sleep_stop_ms);
    if (strcmp(p->cfg.hang, "stop") == 0)
        hang_forever();
    join(p);
}

static void probe_destroy(rnm_instance *p) {
    trace(&p->cfg, "destroy", 0, 0);
    if (strcmp(p->cfg.hang, "destroy") == 0)
        hang_forever();
    free(p);
}

#ifndef PROBE_NAME
#define PROBE_NAME "probe"
#endif
#ifndef PROBE_VERSION
#define PROBE_VERSION "1.2.3"
#endif
#ifndef DESC_MAGIC
#define DESC_MAGIC RNM_PLUGIN_MAGIC
#endif
#ifndef DESC_ABI_MAJOR
#define DESC_ABI_MAJOR RNM_ABI_MAJOR
#endif
#ifndef DESC_ABI_MINOR
#define DESC_ABI_MINOR RNM_ABI_MINOR
#endif
#ifndef DESC_BUILD_INFO
#define DESC_BUILD_INFO NULL
#endif
#ifdef NO_CREATE
#define PROBE_CREATE_FN NULL
#else
#define PROBE_CREATE_FN probe_create
#endif
#ifndef ENTRY_SYMBOL
#define ENTRY_SYMBOL rnm_plugin_entry_v1
#endif

/* A descriptor as a later 1.x header might define it: v1.0's fields, then more at the end. */
struct future_descriptor {
    rnm_plugin_descriptor v1_0;
    void (*pause)(rnm_instance *p);
    uint64_t capabilities;
};

static void probe_pause(rnm_instance *p) {
    trace(&p->cfg, "pause", 0, 0);
}

#ifndef DESC_STRUCT_SIZE
#ifdef FUTURE_FIELD
#define DESC_STRUCT_SIZE sizeof(struct future_descriptor)
#else
#define DESC_STRUCT_SIZE sizeof(rnm_plugin_descriptor)
#endif
#endif

__attribute__((used)) /* ENTRY_RETURNS_NULL builds never hand it out */
static const struct future_descriptor descriptor = {
    .v1_0 = {
        .struct_size = (uint32_t)(DESC_STRUCT_SIZE),
        .magic = DESC_MAGIC,
        .abi_major = DESC_ABI_MAJOR,
        .abi_minor = DESC_ABI_MINOR,
        .name = PROBE_NAME,
        .version = PROBE_VERSION,
        .build_info = DESC_BUILD_INFO,
        .create = PROBE_CREATE_FN,
        .start = probe_start,
        .reconfigure = PROBE_RECONFIGURE_FN,
        .stop = probe_stop,
        .destroy = probe_destroy,
    },
    .pause = probe_pause,
    .capabilities = ~(uint64_t)0,
};

RNM_PLUGIN_EXPORT const rnm_plugin_descriptor *ENTRY_SYMBOL(uint32_t host_abi_major, uint32_t host_abi_minor) {
    (void)host_abi_minor;
#ifdef ENTRY_RETURNS_NULL
    (void)host_abi_major;
    return NULL;
#else
    return host_abi_major == RNM_ABI_MAJOR ? &descriptor.v1_0 : NULL;
#endif
}
