/* The ABI's layout, frozen: these assertions fail the build if a change to rnm_plugin.h would move a field
 * that plugins built against v1.0 rely on (LP64: x86_64, aarch64). New fields go after the last one. */
#include "rnm_plugin.h"

#define AT(type, field, offset) _Static_assert(offsetof(type, field) == (offset), #type "." #field " moved")

_Static_assert(sizeof(rnm_addr) == 20, "rnm_addr changed size");
AT(rnm_addr, bytes, 4);
_Static_assert(sizeof(rnm_set_change) == 40, "rnm_set_change changed size");
AT(rnm_set_change, timeout_ms, 8);
AT(rnm_set_change, addr, 16);

#if UINTPTR_MAX == 0xffffffffffffffffu
AT(rnm_host_api, log, 8);
AT(rnm_host_api, set_apply, 16);
AT(rnm_host_api, set_replace, 24);
AT(rnm_host_api, addr_parse, 32);
AT(rnm_host_api, set_health, 40);
AT(rnm_host_api, wait_writable, 48);
AT(rnm_host_api, addr_format, 56);
AT(rnm_plugin_descriptor, name, 16);
AT(rnm_plugin_descriptor, version, 24);
AT(rnm_plugin_descriptor, build_info, 32);
AT(rnm_plugin_descriptor, create, 40);
AT(rnm_plugin_descriptor, start, 48);
AT(rnm_plugin_descriptor, reconfigure, 56);
AT(rnm_plugin_descriptor, stop, 64);
AT(rnm_plugin_descriptor, destroy, 72);
_Static_assert(sizeof(rnm_plugin_descriptor) == 80, "v1.0 descriptor is 80 bytes");
#endif
