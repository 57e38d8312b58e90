/* rnm_plugin.h - the rnmd plugin ABI, major version 1.
 *
 * The one contract between rnmd and a plugin (a shared object loaded with dlopen). C99 and C++ clean.
 * docs/plugins.md explains it at length; the rules in brief:
 *
 *  - Versioning. The plugin exports one symbol, rnm_plugin_entry_v1. Within major version 1 the ABI only
 *    grows: new fields are appended to the END of a struct, new constants get new values. Every table
 *    starts with struct_size; never read a field that ends beyond struct_size (RNM_HAS_FIELD). rnmd loads a
 *    plugin whose abi_minor is <= its own and refuses a newer one.
 *  - Memory. Strings are NUL-terminated UTF-8. Pointers received in a call are valid only during that call:
 *    copy what you keep. Whatever a plugin passes to the host is copied before the call returns. Nothing is
 *    ever freed across the boundary; error text goes into a buffer the caller owns.
 *  - Threads. Lifecycle calls (create, start, reconfigure, stop, destroy) for one instance come from one
 *    host-owned thread, never concurrently. Host functions are thread-safe and non-blocking (wait_writable
 *    excepted) and may be called from any thread the plugin owns, and from start() and reconfigure().
 *    After stop() returns, the plugin makes no more host calls.
 *  - Loading. rnmd never unloads a plugin (RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE); a new build of a plugin
 *    takes a daemon restart. Plugins are trusted in-process code running as root: no exit(), fork(),
 *    signal handlers, setlocale() or chdir(); no C++ exception or Swift error crosses this boundary.
 */
#ifndef RNM_PLUGIN_H
#define RNM_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RNM_ABI_MAJOR 1
#define RNM_ABI_MINOR 0
#define RNM_PLUGIN_MAGIC 0x504D4E52u /* "RNMP" in little-endian bytes */
#define RNM_PLUGIN_ENTRY_V1 "rnm_plugin_entry_v1"

#if defined(__GNUC__) || defined(__clang__)
#define RNM_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define RNM_PLUGIN_EXPORT
#endif

/* Whether the table at `ptr` (of struct type `type`, starting with struct_size) has `field`. */
#define RNM_HAS_FIELD(ptr, type, field) \
    ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* Results: 0 or a negative errno-style code. */
typedef int32_t rnm_status;
#define RNM_OK 0
#define RNM_ENOENT (-2)        /* the set is not granted to this plugin (or not declared) */
#define RNM_E2BIG (-7)         /* more than RNM_MAX_CHANGES in one call */
#define RNM_EAGAIN (-11)       /* this plugin's queue is full: nothing was taken; wait_writable, then retry */
#define RNM_EINVAL (-22)       /* malformed argument: bad address, op, prefix in a non-interval set, ... */
#define RNM_ENOTSUP (-95)      /* not supported by this set, e.g. a timeout on a set without flags timeout */
#define RNM_EAFNOSUPPORT (-97) /* the address family does not match the set's */
#define RNM_ESHUTDOWN (-108)   /* stop() has begun (or the instance was withdrawn): make no more calls */
#define RNM_ETIMEDOUT (-110)   /* wait_writable: the queue did not drain in time */

/* At most this many changes (or addresses) in one set_apply / set_replace call. */
#define RNM_MAX_CHANGES 1048576u

/* Log levels: syslog priorities. */
#define RNM_LOG_ERR 3
#define RNM_LOG_WARNING 4
#define RNM_LOG_NOTICE 5
#define RNM_LOG_INFO 6
#define RNM_LOG_DEBUG 7

/* Health, as shown by `rnmctl plugins list`. */
#define RNM_HEALTH_OK 0
#define RNM_HEALTH_DEGRADED 1 /* working, with a problem worth seeing (e.g. reconnecting) */
#define RNM_HEALTH_FAILED 2   /* not working; the plugin's elements stay until it withdraws them */

typedef struct rnm_host rnm_host;         /* opaque, owned by the host, one per plugin instance */
typedef struct rnm_instance rnm_instance; /* opaque, defined and owned by the plugin */

/* An address or a prefix. */
typedef struct rnm_addr {
    uint8_t family;      /* 4 or 6 */
    uint8_t prefix_len;  /* 32 (v4) or 128 (v6): one address; less: a prefix, for sets with flags interval */
    uint8_t reserved[2]; /* zero */
    uint8_t bytes[16];   /* network byte order; IPv4 in bytes[0..3], the rest zero */
} rnm_addr;

#define RNM_OP_ADD 1
#define RNM_OP_REMOVE 2

/* One change to a set. */
typedef struct rnm_set_change {
    uint32_t op;         /* RNM_OP_ADD or RNM_OP_REMOVE */
    uint32_t reserved;   /* zero */
    uint64_t timeout_ms; /* ADD only: 0 = the set's default timeout (or none); a set with flags timeout only */
    rnm_addr addr;
    uint32_t reserved2;  /* zero (explicit padding: the struct is 40 bytes everywhere) */
} rnm_set_change;

/* Implemented by the host, passed to create(). Valid until destroy() returns. */
typedef struct rnm_host_api {
    uint32_t struct_size; /* sizeof(rnm_host_api) in the host */
    uint32_t abi_minor;   /* the host's RNM_ABI_MINOR */

    /* A log line, attributed to the plugin instance. */
    void (*log)(rnm_host *h, int32_t level, const char *message);

    /* Applies changes to this plugin's contribution to one granted set, all or nothing: every change is
     * checked first (set granted, family, prefix, timeout), and one bad change rejects the call. Accepted
     * changes are committed with the other pending changes in one nftables transaction. Adding what the
     * plugin already contributes refreshes its timeout; removing what it does not contribute does nothing.
     * A set's content is the union over its owners: removing never takes away another owner's element. */
    rnm_status (*set_apply)(rnm_host *h, const char *set_name, const rnm_set_change *changes, size_t count);

    /* Replaces this plugin's whole contribution to one granted set (after a reconnect, say); the host
     * applies the difference. timeout_ms as in set_apply, for every address. count may be 0. */
    rnm_status (*set_replace)(rnm_host *h, const char *set_name, const rnm_addr *addrs, size_t count,
                              uint64_t timeout_ms);

    /* Parses "192.0.2.1", "2001:db8::1", "10.0.0.0/8", "2001:db8::/32". Host bits of a prefix are
     * cleared. Needs no rnm_host: usable anywhere, also in create(). */
    rnm_status (*addr_parse)(const char *text, rnm_addr *out);

    /* Reports the plugin's health (RNM_HEALTH_*) with a short message (may be NULL). */
    void (*set_health)(rnm_host *h, int32_t state, const char *message);

    /* Blocks until the host has taken what this plugin queued, so that any call fits again (RNM_OK; at
     * once if nothing is queued), timeout_ms passes (RNM_ETIMEDOUT) or the instance stops (RNM_ESHUTDOWN).
     * Only from threads the plugin owns. */
    rnm_status (*wait_writable)(rnm_host *h, uint32_t timeout_ms);

    /* Formats an address as text ("192.0.2.1", "10.0.0.0/8") into buf (len bytes, 64 suffice). */
    rnm_status (*addr_format)(const rnm_addr *addr, char *buf, size_t len);
} rnm_host_api;

/* Exported by the plugin (a static object). */
typedef struct rnm_plugin_descriptor {
    uint32_t struct_size; /* sizeof(rnm_plugin_descriptor) in the plugin */
    uint32_t magic;       /* RNM_PLUGIN_MAGIC */
    uint32_t abi_major;   /* RNM_ABI_MAJOR the plugin was built with */
    uint32_t abi_minor;   /* RNM_ABI_MINOR the plugin was built with */
    const char *name;       /* what the plugin is, e.g. "docker" (informational) */
    const char *version;    /* the plugin's own version (informational) */
    const char *build_info; /* "swift-6.3.1" for a Swift plugin (must match rnmd's toolchain); NULL for C */

    /* Checks the config (a JSON object: the entry's `config:` from config.yaml, {} when absent) and
     * prepares an instance; starts no threads and makes no set calls. On failure returns a negative code
     * and writes a message into err (err_len bytes, owned by the host). */
    rnm_status (*create)(const rnm_host_api *api, rnm_host *h, const char *config_json, rnm_instance **out,
                         char *err, size_t err_len);
    /* Starts work (spawns the plugin's threads); returns within about a second. */
    rnm_status (*start)(rnm_instance *p);
    /* Takes a changed config while running. NULL, or a failure: the host stops, destroys and creates the
     * instance anew with the new config. */
    rnm_status (*reconfigure)(rnm_instance *p, const char *config_json, char *err, size_t err_len);
    /* Stops work and joins the plugin's threads; no host calls after it returns. The host withdraws the
     * plugin's elements (for a restart, once the new instance runs, so what it re-contributes never leaves
     * the kernel), except when rnmd itself is stopping (the table stays as it is: fail-static). A stop
     * that takes longer than a few seconds is logged and abandoned. */
    void (*stop)(rnm_instance *p);
    /* Frees the instance. */
    void (*destroy)(rnm_instance *p);
} rnm_plugin_descriptor;

/* The only symbol a plugin exports. Returns the descriptor, or NULL if it cannot work with a host of this
 * ABI (host_abi_major other than RNM_ABI_MAJOR). The descriptor lives as long as the process. */
RNM_PLUGIN_EXPORT const rnm_plugin_descriptor *rnm_plugin_entry_v1(uint32_t host_abi_major,
                                                                   uint32_t host_abi_minor);

#ifdef __cplusplus
}
#endif

#endif /* RNM_PLUGIN_H */
