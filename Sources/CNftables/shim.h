// libnftables: nft syntax in, one kernel transaction out (used for whole-table loads and listings).
#include <stdbool.h>
#include <stdint.h>
#include <nftables/libnftables.h>
