/* example.c - a minimal rnmd plugin: puts a fixed list of addresses into one granted set.
 * Config: {"set": "allow_v4", "addresses": ["192.0.2.1", "10.0.0.0/8"], "timeout_ms": 0} (timeout optional).
 * Build: cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags rnm-plugin) -o example.so example.c -lpthread */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <rnm_plugin.h>

struct rnm_instance { /* what create() parsed; the host API table stays valid until destroy() returns */
    const rnm_host_api *api; rnm_host *h; pthread_t thread; char set[64]; size_t n; rnm_set_change changes[256]; };

/* Where the value of "key" starts in a flat JSON object (a hand scan: enough for this config). */
static const char *value_of(const char *json, const char *key) {
    char pat[40]; snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    return p ? p + strlen(pat) + strspn(p + strlen(pat), " \t\r\n:") : NULL;
}

static rnm_status create(const rnm_host_api *api, rnm_host *h, const char *cfg, rnm_instance **out,
                         char *err, size_t len) {
    const char *s = value_of(cfg, "set"), *a = value_of(cfg, "addresses"), *t = value_of(cfg, "timeout_ms");
    rnm_instance *p = calloc(1, sizeof *p);
    char text[64] = "";
    if (!p || !s || sscanf(s, "\"%63[^\"]\"", p->set) != 1)
        return snprintf(err, len, "%s", p ? "config: \"set\" is missing" : "out of memory"), free(p), RNM_EINVAL;
    p->api = api, p->h = h;
    for (a = a && *a == '[' ? a + 1 : NULL; a && (a = strpbrk(a, "\"]")) && *a == '"'; a = strchr(a + 1, '"') + 1) {
        if (sscanf(a, "\"%63[^\"]\"", text) != 1 || p->n == 256 || api->addr_parse(text, &p->changes[p->n].addr))
            return snprintf(err, len, "config: bad address \"%s\" in \"addresses\"", text), free(p), RNM_EINVAL;
        p->changes[p->n].op = RNM_OP_ADD, p->changes[p->n++].timeout_ms = t ? strtoull(t, NULL, 10) : 0;
    }
    return *out = p, RNM_OK;
}

/* The plugin's thread: one all-or-nothing call; a full queue (RNM_EAGAIN) took nothing, so wait and retry. */
static void *run(void *arg) {
    rnm_instance *p = arg; char msg[128]; rnm_status rc;
    while ((rc = p->api->set_apply(p->h, p->set, p->changes, p->n)) == RNM_EAGAIN
           && p->api->wait_writable(p->h, 1000) != RNM_ESHUTDOWN) {}
    snprintf(msg, sizeof msg, "added %zu addresses to %s: status %d", p->n, p->set, (int)rc);
    p->api->log(p->h, rc == RNM_OK ? RNM_LOG_INFO : RNM_LOG_ERR, msg);
    p->api->set_health(p->h, rc == RNM_OK ? RNM_HEALTH_OK : RNM_HEALTH_FAILED, msg);
    return NULL;
}

static rnm_status start(rnm_instance *p) { return -pthread_create(&p->thread, NULL, run, p); }
static void stop(rnm_instance *p) { pthread_join(p->thread, NULL); }
static void destroy(rnm_instance *p) { free(p); }

static const rnm_plugin_descriptor descriptor = {
    .struct_size = sizeof(rnm_plugin_descriptor), .magic = RNM_PLUGIN_MAGIC, .abi_major = RNM_ABI_MAJOR,
    .abi_minor = RNM_ABI_MINOR, .name = "example-c", .version = "1.0.0", .build_info = NULL,
    .create = create, .start = start, .reconfigure = NULL, .stop = stop, .destroy = destroy};

/* The one exported symbol (the header declares it with default visibility; everything else is hidden). */
const rnm_plugin_descriptor *rnm_plugin_entry_v1(uint32_t major, uint32_t minor) {
    return (void)minor, major == RNM_ABI_MAJOR ? &descriptor : NULL; }
