/* im_config: one table of settings per process, loaded as
 * defaults -> file (-c FILE / --config FILE) -> environment (CIM_<NAME upper>) -> argv
 * (--name value | --name=value) -> validate (ranges).  Read-only after start. */
#ifndef IM_CONFIG_H
#define IM_CONFIG_H

#include <stddef.h>

typedef enum { IM_CFG_INT, IM_CFG_STR, IM_CFG_BOOL } im_cfg_type_t;

typedef struct im_cfg_opt_s {
    const char *name;   /* e.g. "gate_port"; env CIM_GATE_PORT, flag --gate_port or --gate-port */
    im_cfg_type_t type; /* INT: long long at offset; STR: char * (heap) at offset; BOOL: int */
    size_t offset;      /* offsetof(struct, field) */
    long long min, max; /* INT range (inclusive) */
    const char *def;    /* default as text (NULL = "" for STR) */
    const char *help;
} im_cfg_opt_t;

/* Load settings into cfg. Config file lines: "name = value", '#' comments, blank lines.
 * Returns 0 ok, 1 when --help was printed (caller exits 0), -1 on error (message already on
 * stderr: unknown setting, bad number, out of range, unreadable file). */
int im_config_load(const im_cfg_opt_t *opts, void *cfg, int argc, char **argv, const char *prog);

/* Set one setting from text, as the loader does; 0 ok, -1 bad value (err gets a message). */
int im_config_set(const im_cfg_opt_t *opts, void *cfg, const char *name, const char *value,
                  char *err, size_t errlen);

/* Free the strings held by cfg. */
void im_config_free(const im_cfg_opt_t *opts, void *cfg);

/* Print the settings table (name, default, help) to stdout. */
void im_config_usage(const im_cfg_opt_t *opts, const char *prog);

#endif
