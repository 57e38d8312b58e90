// libmnl plus the kernel UAPI headers rnm speaks over netlink. The glibc headers come first so that
// linux/libc-compat.h suppresses the kernel's duplicate definitions of in_addr, ifreq and friends.
#include <sys/socket.h>
#include <netinet/in.h>
#include <net/if.h>
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nf_tables.h>
