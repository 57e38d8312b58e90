/* flood.c - a hostile plugin: floods set_apply from several threads without ever waiting on RNM_EAGAIN, mixes
 * in calls the host must refuse, and records what the host answered.
 *
 * Config:
 *   "set": "flood_v4"            a granted ipv4_addr set without flags
 *   "ungranted": "other_v4"      a declared set not granted to this plugin
 *   "report": "/path"            written when the flood is over (then health ok, message "done")
 *   "total": 1000000             set_apply calls in all, split over "threads": 4
 *   "hostile_every": 1000        every n-th call of a thread is a bad one (0: none)
 *   "polite": true               on RNM_EAGAIN wait_writable and retry the same call (as a plugin should)
 *   "until_shutdown": true       ignore "total" and stop() alike: call until the host answers RNM_ESHUTDOWN
 *
 * Good calls add one address from 10.64.0.0/16 each (so the set never exceeds 65,536 elements). Bad calls use
 * addresses from 10.65.0.0/16, which must never reach the set. Before the flood every kind of bad call is made
 * once on an empty queue, and its status is reported under "probe".
 *
 * Report (JSON): {"calls", "elapsed_ms", "codes": {"<status>": count}, "probe": {"<kind>": status},
 *                 "accepted": [every address a call returning RNM_OK added], "accepted_other": [...]}
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rnm_plugin.h>
#include "jscan.h"

#define MAX_THREADS 16
#define NCODES 10
static const int32_t code_values[NCODES] = {RNM_OK, RNM_ENOENT, RNM_E2BIG, RNM_EAGAIN, RNM_EINVAL,
                                            RNM_ENOTSUP, RNM_EAFNOSUPPORT, RNM_ESHUTDOWN, RNM_ETIMEDOUT, 1};

enum kind { BAD_OP, BAD_FAMILY, PREFIX_ON_PLAIN_SET, PREFIX_TOO_LONG, UNDECLARED_SET, UNGRANTED_SET,
            WRONG_FAMILY, TIMEOUT_WITHOUT_FLAG, TOO_BIG, MIXED_BATCH, NKINDS };
static const char *kind_names[NKINDS] = {"bad_op", "bad_family", "prefix_on_plain_set", "prefix_too_long",
                                         "undeclared_set", "ungranted_set", "wrong_family",
                                         "timeout_without_flag", "too_big", "mixed_batch"};

struct rnm_instance {
    const rnm_host_api *api;
    rnm_host *h;
    char set[64], ungranted[64], report[512];
    long total, hostile_every;
    int threads, polite, until_shutdown;
    pthread_t coordinator;
    int started;
    atomic_int stopping;
    _Atomic uint64_t accepted[65536 / 64]; /* bitmap over 10.64.0.0/16 */
    pthread_mutex_t lock;
    char other[64][64]; /* addresses outside the flood range that a call returning RNM_OK added */
    int n_other;
    long codes[NCODES]; /* merged by the coordinator */
    int32_t probe[NKINDS];
    rnm_set_change *too_big; /* RNM_MAX_CHANGES + 1 zeroed changes (never touched: no memory) */
};

struct worker {
    rnm_instance *p;
    int index;
    long calls;
    long codes[NCODES];
};

static int code_slot(int32_t rc) {
    for (int i = 0; i < NCODES - 1; i++)
        if (code_values[i] == rc)
            return i;
    return NCODES - 1;
}

static rnm_addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint8_t prefix) {
    rnm_addr x = {.family = 4, .prefix_len = prefix};
    x.bytes[0] = a, x.bytes[1] = b, x.bytes[2] = c, x.bytes[3] = d;
    return x;
}

static void record(rnm_instance *p, const rnm_set_change *changes, size_t count) {
    for (size_t i = 0; i < count; i++) {
        const rnm_addr *a = &changes[i].addr;
        if (changes[i].op != RNM_OP_ADD)
            continue;
        if (a->family == 4 && a->prefix_len == 32 && a->bytes[0] == 10 && a->bytes[1] == 64) {
            unsigned n = (unsigned)a->bytes[2] << 8 | a->bytes[3];
            atomic_fetch_or(&p->accepted[n / 64], (uint64_t)1 << (n % 64));
        } else {
            pthread_mutex_lock(&p->lock);
            if (p->n_other < 64)
                p->api->addr_format(a, p->other[p->n_other++], 64);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

/* One bad call of the given kind; returns the host's answer. */
static int32_t hostile(rnm_instance *p, enum kind k, unsigned r) {
    rnm_set_change c[2] = {{.op = RNM_OP_ADD, .addr = v4(10, 65, (uint8_t)(r >> 8), (uint8_t)r, 32)},
                           {.op = RNM_OP_ADD, .addr = v4(10, 65, 255, (uint8_t)r, 32)}};
    const char *set = p->set;
    size_t count = 1;
    const rnm_set_change *changes = c;
    switch (k) {
    case BAD_OP: c[0].op = 9; break;
    case BAD_FAMILY: c[0].addr.family = 7; break;
    case PREFIX_ON_PLAIN_SET: c[0].addr = v4(10, 65, 7, 0, 24); break;
    case PREFIX_TOO_LONG: c[0].addr.prefix_len = 33; break;
    case UNDECLARED_SET: set = "no_such_set"; break;
    case UNGRANTED_SET: set = p->ungranted[0] ? p->ungranted : "not_granted_v4"; break;
    case WRONG_FAMILY:
        c[0].addr = (rnm_addr){.family = 6, .prefix_len = 128, .bytes = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x65}};
        break;
    case TIMEOUT_WITHOUT_FLAG: c[0].timeout_ms = 5000; break;
    case TOO_BIG: changes = p->too_big, count = (size_t)RNM_MAX_CHANGES + 1; break;
    case MIXED_BATCH: c[1].op = 0, count = 2; break; /* one good change, one bad: nothing may be taken */
    default: break;
    }
    int32_t rc = p->api->set_apply(p->h, set, changes, count);
    if (rc == RNM_OK && changes)
        record(p, changes, count < 2 ? count : 2);
    return rc;
}

static void *flood(void *arg) {
    struct worker *w = arg;
    rnm_instance *p = w->p;
    long share = p->total / p->threads + (w->index < p->total % p->threads ? 1 : 0);
    uint32_t x = 0x9e3779b9u * (uint32_t)(w->index + 1);
    for (long i = 0; p->until_shutdown || (i < share && !atomic_load_explicit(&p->stopping, memory_order_relaxed));
         i++) {
        int32_t rc;
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        if (p->hostile_every > 0 && i % p->hostile_every == p->hostile_every - 1) {
            rc = hostile(p, (enum kind)((i / p->hostile_every + w->index) % NKINDS), x);
        } else {
            rnm_set_change c = {.op = RNM_OP_ADD, .addr = v4(10, 64, (uint8_t)(x >> 8), (uint8_t)x, 32)};
            /* Polite: wait and retry (after stop began the retry answers RNM_ESHUTDOWN). */
            while ((rc = p->api->set_apply(p->h, p->set, &c, 1)) == RNM_EAGAIN && p->polite) {
                w->codes[code_slot(rc)]++, w->calls++;
                p->api->wait_writable(p->h, 1000);
            }
            if (rc == RNM_OK)
                record(p, &c, 1);
        }
        w->calls++;
        w->codes[code_slot(rc)]++;
        if (rc == RNM_ESHUTDOWN)
            break;
    }
    return NULL;
}

static void write_report(rnm_instance *p, long calls, long elapsed_ms) {
    char tmp[600];
    FILE *f;
    int first = 1;
    snprintf(tmp, sizeof tmp, "%s.tmp", p->report);
    if (!(f = fopen(tmp, "w")))
        return;
    fprintf(f, "{\"calls\": %ld, \"elapsed_ms\": %ld, \"codes\": {", calls, elapsed_ms);
    for (int i = 0; i < NCODES; i++)
        if (p->codes[i])
            fprintf(f, "%s\"%d\": %ld", first ? "" : ", ", (int)code_values[i], (long)p->codes[i]), first = 0;
    fprintf(f, "}, \"probe\": {");
    for (int k = 0; k < NKINDS; k++)
        fprintf(f, "%s\"%s\": %d", k ? ", " : "", kind_names[k], (int)p->probe[k]);
    fprintf(f, "}, \"accepted\": [");
    first = 1;
    for (unsigned n = 0; n < 65536; n++)
        if (p->accepted[n / 64] & ((uint64_t)1 << (n % 64)))
            fprintf(f, "%s\"10.64.%u.%u\"", first ? "" : ",", n >> 8, n & 255), first = 0;
    fprintf(f, "], \"accepted_other\": [");
    for (int i = 0; i < p->n_other; i++)
        fprintf(f, "%s\"%s\"", i ? "," : "", p->other[i]);
    fprintf(f, "]}\n");
    fclose(f);
    rename(tmp, p->report);
}

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void *coordinate(void *arg) {
    rnm_instance *p = arg;
    struct worker w[MAX_THREADS] = {{0}};
    pthread_t t[MAX_THREADS];
    long calls = 0, t0 = now_ms();
    char message[160];
    for (int k = 0; k < NKINDS; k++) {
        p->probe[k] = hostile(p, (enum kind)k, 0x100u + (unsigned)k);
        p->codes[code_slot(p->probe[k])]++;
        calls++;
    }
    for (int i = 0; i < p->threads; i++) {
        w[i] = (struct worker){.p = p, .index = i};
        if (pthread_create(&t[i], NULL, flood, &w[i]) != 0)
            w[i].index = -1;
    }
    for (int i = 0; i < p->threads; i++) {
        if (w[i].index < 0)
            continue;
        pthread_join(t[i], NULL);
        calls += w[i].calls;
        for (int c = 0; c < NCODES; c++)
            p->codes[c] += w[i].codes[c];
    }
    long elapsed = now_ms() - t0;
    write_report(p, calls, elapsed);
    snprintf(message, sizeof message, "flood: %ld calls in %ld ms: %ld accepted, %ld busy", calls, elapsed,
             (long)p->codes[0], (long)p->codes[code_slot(RNM_EAGAIN)]);
    p->api->log(p->h, RNM_LOG_INFO, message);
    if (!atomic_load(&p->stopping))
        p->api->set_health(p->h, RNM_HEALTH_OK, "done");
    return NULL;
}

static rnm_status flood_create(const rnm_host_api *api, rnm_host *h, const char *json, rnm_instance **out,
                               char *err, size_t len) {
    rnm_instance *p = calloc(1, sizeof *p);
    if (!p || !(p->too_big = calloc((size_t)RNM_MAX_CHANGES + 1, sizeof(rnm_set_change)))) {
        free(p);
        snprintf(err, len, "flood: out of memory");
        return RNM_EINVAL;
    }
    p->api = api, p->h = h;
    pthread_mutex_init(&p->lock, NULL);
    if (!jscan_string(json, "set", p->set, sizeof p->set)
        || !jscan_string(json, "report", p->report, sizeof p->report)) {
        snprintf(err, len, "flood: \"set\" and \"report\" are required");
        free(p->too_big), free(p);
        return RNM_EINVAL;
    }
    jscan_string(json, "ungranted", p->ungranted, sizeof p->ungranted);
    p->total = (long)jscan_number(json, "total", 1000000);
    p->threads = (int)jscan_number(json, "threads", 4);
    p->hostile_every = (long)jscan_number(json, "hostile_every", 1000);
    p->polite = jscan_true(json, "polite");
    p->until_shutdown = jscan_true(json, "until_shutdown");
    if (p->threads < 1 || p->threads > MAX_THREADS)
        p->threads = 4;
    *out = p;
    return RNM_OK;
}

static rnm_status flood_start(rnm_instance *p) {
    if (pthread_create(&p->coordinator, NULL, coordinate, p) != 0)
        return RNM_EINVAL;
    p->started = 1;
    return RNM_OK;
}

static void flood_stop(rnm_instance *p) {
    atomic_store(&p->stopping, 1);
    if (p->started)
        pthread_join(p->coordinator, NULL);
    p->started = 0;
}

static void flood_destroy(rnm_instance *p) {
    pthread_mutex_destroy(&p->lock);
    free(p->too_big);
    free(p);
}

static const rnm_plugin_descriptor descriptor = {
    .struct_size = sizeof(rnm_plugin_descriptor),
    .magic = RNM_PLUGIN_MAGIC,
    .abi_major = RNM_ABI_MAJOR,
    .abi_minor = RNM_ABI_MINOR,
    .name = "flood",
    .version = "1.0.0",
    .build_info = NULL,
    .create = flood_create,
    .start = flood_start,
    .reconfigure = NULL,
    .stop = flood_stop,
    .destroy = flood_destroy,
};

const rnm_plugin_descriptor *rnm_plugin_entry_v1(uint32_t host_abi_major, uint32_t host_abi_minor) {
    (void)host_abi_minor;
    return host_abi_major == RNM_ABI_MAJOR ? &descriptor : NULL;
}
