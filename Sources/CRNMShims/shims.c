#include "CRNMShims.h"

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
