/* jscan.h - just enough JSON for the test plugins' configs: flat objects whose values are strings, numbers,
 * booleans or arrays of strings, as rnmd passes them (no escapes in the strings the tests use). */
#ifndef JSCAN_H
#define JSCAN_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where the value of "key" starts, or NULL. */
static inline const char *jscan_value(const char *json, const char *key) {
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    for (const char *p = json; (p = strstr(p, pat)) != NULL; p += strlen(pat)) {
        const char *v = p + strlen(pat);
        v += strspn(v, " \t\r\n");
        if (*v == ':')
            return v + 1 + strspn(v + 1, " \t\r\n");
    }
    return NULL;
}

/* Copies the string value of "key" into out (n bytes); 1 if there is one. */
static inline int jscan_string(const char *json, const char *key, char *out, size_t n) {
    const char *v = jscan_value(json, key), *end;
    if (!v || *v != '"' || !(end = strchr(v + 1, '"')))
        return 0;
    snprintf(out, n, "%.*s", (int)(end - v - 1), v + 1);
    return 1;
}

static inline long long jscan_number(const char *json, const char *key, long long dflt) {
    const char *v = jscan_value(json, key);
    return v && (*v == '-' || (*v >= '0' && *v <= '9')) ? strtoll(v, NULL, 10) : dflt;
}

static inline int jscan_true(const char *json, const char *key) {
    const char *v = jscan_value(json, key);
    return v && strncmp(v, "true", 4) == 0;
}

/* Calls f(text, ctx) for every string in the array value of "key"; returns how many there were, or -1 as
 * soon as f returns nonzero. */
static inline int jscan_strings(const char *json, const char *key, int (*f)(const char *, void *), void *ctx) {
    const char *v = jscan_value(json, key);
    int n = 0;
    if (!v || *v != '[')
        return 0;
    for (v++; (v = strpbrk(v, "\"]")) != NULL && *v == '"'; n++) {
        const char *end = strchr(v + 1, '"');
        char text[128];
        if (!end)
            return -1;
        snprintf(text, sizeof text, "%.*s", (int)(end - v - 1), v + 1);
        if (f(text, ctx))
            return -1;
        v = end + 1;
    }
    return n;
}
#endif
