/* im_config: table-driven settings: defaults -> file -> environment -> argv.
 *
 * Notes on the contract of im_config.h:
 * - cfg is treated as uninitialised by the defaults step (STR fields are overwritten, not
 *   freed); every later step frees the string it replaces. On error and on --help the loader
 *   frees the strings itself (im_config_free afterwards is harmless: it leaves NULLs).
 * - Names match with '-' and '_' interchangeable, in the file and on the command line.
 * - Unknown names in the file or argv are errors. Unknown CIM_* environment variables are
 *   ignored: the environment is shared by every process of a stack and each process only
 *   knows its own settings.
 * - A BOOL flag given without "=value" takes the next argument when it is a boolean word,
 *   else means true ("--verbose --port 1" sets verbose).
 * - INT values: optional sign, then decimal digits or 0x + hex digits; nothing else. */
#include "im_config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CFG_ERR_MAX 1024 /* whole message */
#define CFG_MSG_MAX 300  /* one setting's message, prefixed by where it came from */

static int name_eq(const char *a, const char *b, size_t blen)
{
    size_t i = 0;
    for (; i < blen && a[i]; i++) {
        char ca = a[i] == '-' ? '_' : a[i];
        char cb = b[i] == '-' ? '_' : b[i];
        if (ca != cb)
            return 0;
    }
    return a[i] == '\0' && i == blen;
}

static const im_cfg_opt_t *find_opt(const im_cfg_opt_t *opts, const char *name, size_t len)
{
    for (const im_cfg_opt_t *o = opts; o->name; o++)
        if (name_eq(o->name, name, len))
            return o;
    return NULL;
}

static int parse_int(const char *s, long long *out)
{
    const char *p = s;
    int neg = 0;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    int base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    if (!*p)
        return -1;
    for (const char *q = p; *q; q++)
        if (base == 10 ? !isdigit((unsigned char) *q) : !isxdigit((unsigned char) *q))
            return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long u = strtoull(p, &end, base);
    if (errno || *end)
        return -1;
    if (neg) {
        if (u > (unsigned long long) LLONG_MAX + 1ULL)
            return -1;
        *out = u == (unsigned long long) LLONG_MAX + 1ULL ? LLONG_MIN : -(long long) u;
    } else {
        if (u > (unsigned long long) LLONG_MAX)
            return -1;
        *out = (long long) u;
    }
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int set_opt(const im_cfg_opt_t *o, void *cfg, const char *value, int free_old, char *err,
                   size_t errlen)
{
    char *field = (char *) cfg + o->offset;
    switch (o->type) {
    case IM_CFG_INT: {
        long long v;
        if (parse_int(value, &v) < 0) {
            snprintf(err, errlen, "%s: bad number '%s'", o->name, value);
            return -1;
        }
        if (v < o->min || v > o->max) {
            snprintf(err, errlen, "%s: %lld out of range [%lld, %lld]", o->name, v, o->min, o->max);
            return -1;
        }
        memcpy(field, &v, sizeof(v));
        return 0;
    }
    case IM_CFG_BOOL: {
        int b;
        if (parse_bool(value, &b) < 0) {
            snprintf(err, errlen, "%s: bad boolean '%s' (1/0, true/false, yes/no, on/off)", o->name,
                     value);
            return -1;
        }
        memcpy(field, &b, sizeof(b));
        return 0;
    }
    case IM_CFG_STR: {
        char *copy = strdup(value);
        if (!copy) {
            snprintf(err, errlen, "%s: out of memory", o->name);
            return -1;
        }
        char *old;
        memcpy(&old, field, sizeof(old));
        if (free_old)
            free(old);
        memcpy(field, &copy, sizeof(copy));
        return 0;
    }
    }
    snprintf(err, errlen, "%s: bad setting type", o->name);
    return -1;
}

int im_config_set(const im_cfg_opt_t *opts, void *cfg, const char *name, const char *value,
                  char *err, size_t errlen)
{
    const im_cfg_opt_t *o = find_opt(opts, name, strlen(name));
    if (!o) {
        snprintf(err, errlen, "unknown setting '%s'", name);
        return -1;
    }
    return set_opt(o, cfg, value, 1, err, errlen);
}

void im_config_free(const im_cfg_opt_t *opts, void *cfg)
{
    for (const im_cfg_opt_t *o = opts; o->name; o++) {
        if (o->type != IM_CFG_STR)
            continue;
        char *field = (char *) cfg + o->offset, *s;
        memcpy(&s, field, sizeof(s));
        free(s);
        s = NULL;
        memcpy(field, &s, sizeof(s));
    }
}

static const char *type_name(im_cfg_type_t t)
{
    return t == IM_CFG_INT ? "int" : t == IM_CFG_BOOL ? "bool" : "string";
}

void im_config_usage(const im_cfg_opt_t *opts, const char *prog)
{
    printf("Usage: %s [-c FILE] [--name value | --name=value]...\n"
           "Settings are read from defaults, then FILE (\"name = value\" lines), then the\n"
           "environment (CIM_<NAME>), then the command line.\n\n",
           prog ? prog : "prog");
    for (const im_cfg_opt_t *o = opts; o->name; o++) {
        printf("  --%-28s %-6s default \"%s\"", o->name, type_name(o->type), o->def ? o->def : "");
        if (o->type == IM_CFG_INT)
            printf(" [%lld..%lld]", o->min, o->max);
        printf("\n      %s\n", o->help ? o->help : "");
    }
    printf("  -c, --config FILE              read settings from FILE\n"
           "  -h, --help                     print this help\n");
}

static char *trim(char *s)
{
    while (isspace((unsigned char) *s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char) s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int load_file(const im_cfg_opt_t *opts, void *cfg, const char *path, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    char msg[CFG_MSG_MAX];
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected 'name = value'", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *name = trim(s), *value = trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') && value[vlen - 1] == value[0]) {
            value[vlen - 1] = '\0';
            value++;
        }
        if (im_config_set(opts, cfg, name, value, msg, sizeof(msg)) < 0) {
            snprintf(err, errlen, "%s:%d: %s", path, lineno, msg);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "error reading config file %s", path);
        rc = -1;
    }
    free(line);
    fclose(f);
    return rc;
}

static int load_env(const im_cfg_opt_t *opts, void *cfg, char *err, size_t errlen)
{
    char var[256];
    char msg[CFG_MSG_MAX];
    for (const im_cfg_opt_t *o = opts; o->name; o++) {
        size_t n = strlen(o->name);
        if (n + 5 > sizeof(var))
            continue;
        memcpy(var, "CIM_", 4);
        for (size_t i = 0; i < n; i++)
            var[4 + i] = o->name[i] == '-' ? '_' : (char) toupper((unsigned char) o->name[i]);
        var[4 + n] = '\0';
        const char *v = getenv(var);
        if (!v)
            continue;
        if (set_opt(o, cfg, v, 1, msg, sizeof(msg)) < 0) {
            snprintf(err, errlen, "environment %s: %s", var, msg);
            return -1;
        }
    }
    return 0;
}

static int is_flag(const char *a, const char *s, const char *l)
{
    return strcmp(a, s) == 0 || strcmp(a, l) == 0;
}

/* argv, pass 1: find -h and -c; check the shape of everything else. */
static int scan_argv(const im_cfg_opt_t *opts, int argc, char **argv, const char **file, int *help,
                     char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_flag(a, "-h", "--help")) {
            *help = 1;
            continue;
        }
        if (is_flag(a, "-c", "--config")) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "%s needs a file name", a);
                return -1;
            }
            *file = argv[++i];
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0) {
            *file = a + 9;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            snprintf(err, errlen, "unexpected argument '%s'", a);
            return -1;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t) (eq - name) : strlen(name);
        const im_cfg_opt_t *o = find_opt(opts, name, len);
        if (!o) {
            snprintf(err, errlen, "unknown setting '%.*s'", (int) len, name);
            return -1;
        }
        if (eq)
            continue;
        if (o->type == IM_CFG_BOOL) {
            int b;
            if (i + 1 < argc && parse_bool(argv[i + 1], &b) == 0)
                i++;
            continue;
        }
        if (i + 1 >= argc) {
            snprintf(err, errlen, "--%s needs a value", name);
            return -1;
        }
        i++;
    }
    return 0;
}

/* argv, pass 2: apply the settings (the shape was checked by scan_argv). */
static int apply_argv(const im_cfg_opt_t *opts, void *cfg, int argc, char **argv, char *err,
                      size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_flag(a, "-h", "--help") || strncmp(a, "--config=", 9) == 0)
            continue;
        if (is_flag(a, "-c", "--config")) {
            i++;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t) (eq - name) : strlen(name);
        const im_cfg_opt_t *o = find_opt(opts, name, len);
        const char *value;
        if (eq) {
            value = eq + 1;
        } else if (o->type == IM_CFG_BOOL) {
            int b;
            value = "1";
            if (i + 1 < argc && parse_bool(argv[i + 1], &b) == 0)
                value = argv[++i];
        } else {
            value = argv[++i];
        }
        if (set_opt(o, cfg, value, 1, err, errlen) < 0)
            return -1;
    }
    return 0;
}

int im_config_load(const im_cfg_opt_t *opts, void *cfg, int argc, char **argv, const char *prog)
{
    char err[CFG_ERR_MAX];
    const char *file = NULL;
    int help = 0;

    if (!prog)
        prog = argc > 0 && argv[0] ? argv[0] : "cim";

    /* defaults: STR fields start as NULL so a failure part-way can free what was set */
    for (const im_cfg_opt_t *o = opts; o->name; o++) {
        if (o->type == IM_CFG_STR) {
            char *null = NULL;
            memcpy((char *) cfg + o->offset, &null, sizeof(null));
        }
    }
    for (const im_cfg_opt_t *o = opts; o->name; o++) {
        const char *def = o->def ? o->def : (o->type == IM_CFG_STR ? "" : "0");
        if (set_opt(o, cfg, def, 0, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s: bad default: %s\n", prog, err);
            goto fail;
        }
    }

    if (scan_argv(opts, argc, argv, &file, &help, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s (try --help)\n", prog, err);
        goto fail;
    }
    if (help) {
        im_config_usage(opts, prog);
        im_config_free(opts, cfg);
        return 1;
    }
    if (file && load_file(opts, cfg, file, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        goto fail;
    }
    if (load_env(opts, cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        goto fail;
    }
    if (apply_argv(opts, cfg, argc, argv, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        goto fail;
    }
    return 0;

fail:
    im_config_free(opts, cfg);
    return -1;
}
