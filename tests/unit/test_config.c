/* Unit tests for common/im_config. */
#include "../test.h"

#include <stddef.h>

#include "im_config.h"

typedef struct {
    long long port;
    char *host;
    int verbose;
    long long max_packet;
    char *secret;
    int daemon;
} tcfg_t;

static const im_cfg_opt_t opts[] = {
    {"test_port", IM_CFG_INT, offsetof(tcfg_t, port), 1, 65535, "8000", "TCP port"},
    {"test_host", IM_CFG_STR, offsetof(tcfg_t, host), 0, 0, "127.0.0.1", "address"},
    {"verbose", IM_CFG_BOOL, offsetof(tcfg_t, verbose), 0, 1, "false", "more logs"},
    {"max_packet", IM_CFG_INT, offsetof(tcfg_t, max_packet), 16, 1 << 24, "65536", "limit"},
    {"secret", IM_CFG_STR, offsetof(tcfg_t, secret), 0, 0, NULL, "token secret"},
    {"daemon", IM_CFG_BOOL, offsetof(tcfg_t, daemon), 0, 1, "1", NULL},
    {NULL},
};

static void clear_env(void)
{
    unsetenv("CIM_TEST_PORT");
    unsetenv("CIM_TEST_HOST");
    unsetenv("CIM_VERBOSE");
    unsetenv("CIM_MAX_PACKET");
    unsetenv("CIM_SECRET");
    unsetenv("CIM_DAEMON");
}

static int load(tcfg_t *c, int argc, const char **argv)
{
    memset(c, 0, sizeof(*c));
    return im_config_load(opts, c, argc, (char **) argv, "test");
}

static char tmp_path[64];

static const char *write_file(const char *text)
{
    strcpy(tmp_path, "/tmp/cim_test_cfg_XXXXXX");
    int fd = mkstemp(tmp_path);
    CHECK(fd >= 0);
    size_t n = strlen(text);
    CHECK(write(fd, text, n) == (ssize_t) n);
    close(fd);
    return tmp_path;
}

TEST(config_defaults)
{
    clear_env();
    tcfg_t c;
    const char *argv[] = {"prog"};
    CHECK_EQ_INT(load(&c, 1, argv), 0);
    CHECK_EQ_INT(c.port, 8000);
    CHECK_EQ_STR(c.host, "127.0.0.1");
    CHECK_EQ_INT(c.verbose, 0);
    CHECK_EQ_INT(c.max_packet, 65536);
    CHECK_EQ_STR(c.secret, "");
    CHECK_EQ_INT(c.daemon, 1);
    im_config_free(opts, &c);
    CHECK(c.host == NULL && c.secret == NULL);
    im_config_free(opts, &c); /* twice is harmless */
    /* argc 0 / no argv[0] */
    CHECK_EQ_INT(im_config_load(opts, &c, 0, NULL, NULL), 0);
    im_config_free(opts, &c);
}

TEST(config_file)
{
    clear_env();
    const char *path = write_file("# a comment\n"
                                  "\n"
                                  "   test_port = 9001  \n"
                                  "test-host=10.0.0.1\n"
                                  "  # indented comment\n"
                                  "verbose = yes\n"
                                  "secret = \"with spaces # and hash\"\n"
                                  "max_packet=0x100\n"
                                  "test_host = 10.0.0.2\n");
    tcfg_t c;
    const char *argv[] = {"prog", "-c", path};
    CHECK_EQ_INT(load(&c, 3, argv), 0);
    CHECK_EQ_INT(c.port, 9001);
    CHECK_EQ_STR(c.host, "10.0.0.2"); /* later line wins, old string freed */
    CHECK_EQ_INT(c.verbose, 1);
    CHECK_EQ_STR(c.secret, "with spaces # and hash");
    CHECK_EQ_INT(c.max_packet, 256);
    im_config_free(opts, &c);

    const char *argv2[] = {"prog", "--config", path};
    CHECK_EQ_INT(load(&c, 3, argv2), 0);
    CHECK_EQ_INT(c.port, 9001);
    im_config_free(opts, &c);
    const char *argv3[] = {"prog", "--config=x"};
    CHECK_EQ_INT(load(&c, 2, argv3), -1); /* no such file */
    CHECK(c.host == NULL);
    unlink(path);
}

TEST(config_file_errors)
{
    clear_env();
    tcfg_t c;
    const char *bad[] = {"no_equals_sign\n",
                         "nope = 1\n",
                         "test_port = 0\n",
                         "test_port = 65536\n",
                         "test_port = 12ab\n",
                         "verbose = maybe\n",
                         "= 5\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *path = write_file(bad[i]);
        const char *argv[] = {"prog", "-c", path};
        CHECK_EQ_INT(load(&c, 3, argv), -1);
        CHECK(c.host == NULL); /* freed on error */
        unlink(path);
    }
    const char *argv[] = {"prog", "-c"};
    CHECK_EQ_INT(load(&c, 2, argv), -1);
}

TEST(config_env_overrides_file)
{
    clear_env();
    const char *path = write_file("test_port = 9001\ntest_host = filehost\nverbose = 1\n");
    setenv("CIM_TEST_PORT", "9002", 1);
    setenv("CIM_TEST_HOST", "envhost", 1);
    setenv("CIM_NOT_A_SETTING_OF_THIS_PROCESS", "1", 1); /* ignored */
    tcfg_t c;
    const char *argv[] = {"prog", "-c", path};
    CHECK_EQ_INT(load(&c, 3, argv), 0);
    CHECK_EQ_INT(c.port, 9002);
    CHECK_EQ_STR(c.host, "envhost");
    CHECK_EQ_INT(c.verbose, 1);
    im_config_free(opts, &c);

    setenv("CIM_TEST_PORT", "70000", 1);
    CHECK_EQ_INT(load(&c, 3, argv), -1);
    setenv("CIM_TEST_PORT", "abc", 1);
    CHECK_EQ_INT(load(&c, 3, argv), -1);
    clear_env();
    unlink(path);
}

TEST(config_argv_overrides_env)
{
    clear_env();
    const char *path = write_file("test_port = 9001\nmax_packet = 100\n");
    setenv("CIM_TEST_PORT", "9002", 1);
    setenv("CIM_MAX_PACKET", "200", 1);
    setenv("CIM_TEST_HOST", "envhost", 1);
    tcfg_t c;
    /* -c after the flags: the file is still read before env and argv */
    const char *argv[] = {"prog",      "--test-port", "9003", "--test_host=arghost",
                          "--verbose", "--daemon",    "off",  "-c",
                          path};
    CHECK_EQ_INT(load(&c, 9, argv), 0);
    CHECK_EQ_INT(c.port, 9003);
    CHECK_EQ_STR(c.host, "arghost");
    CHECK_EQ_INT(c.max_packet, 200);
    CHECK_EQ_INT(c.verbose, 1);
    CHECK_EQ_INT(c.daemon, 0);
    im_config_free(opts, &c);

    const char *argv2[] = {"prog", "--max-packet=300", "--secret", "s3", "--secret", "s4"};
    CHECK_EQ_INT(load(&c, 6, argv2), 0);
    CHECK_EQ_INT(c.max_packet, 300);
    CHECK_EQ_STR(c.secret, "s4");
    im_config_free(opts, &c);
    clear_env();
    unlink(path);
}

TEST(config_argv_errors)
{
    clear_env();
    tcfg_t c;
    const char *a1[] = {"prog", "--test-port"}; /* missing value */
    CHECK_EQ_INT(load(&c, 2, a1), -1);
    const char *a2[] = {"prog", "--bogus", "1"};
    CHECK_EQ_INT(load(&c, 3, a2), -1);
    const char *a3[] = {"prog", "--bogus=1"};
    CHECK_EQ_INT(load(&c, 2, a3), -1);
    const char *a4[] = {"prog", "stray"};
    CHECK_EQ_INT(load(&c, 2, a4), -1);
    const char *a5[] = {"prog", "-x"};
    CHECK_EQ_INT(load(&c, 2, a5), -1);
    const char *a6[] = {"prog", "--test-port", "0"};
    CHECK_EQ_INT(load(&c, 3, a6), -1);
    const char *a7[] = {"prog", "--max_packet=15"};
    CHECK_EQ_INT(load(&c, 2, a7), -1);
    const char *a8[] = {"prog", "--verbose=perhaps"};
    CHECK_EQ_INT(load(&c, 2, a8), -1);
    const char *a9[] = {"prog", "--"};
    CHECK_EQ_INT(load(&c, 2, a9), -1);
}

TEST(config_set_ranges_and_numbers)
{
    clear_env();
    tcfg_t c;
    const char *argv[] = {"prog"};
    CHECK_EQ_INT(load(&c, 1, argv), 0);
    char err[256];
    CHECK_EQ_INT(im_config_set(opts, &c, "test_port", "1", err, sizeof(err)), 0);
    CHECK_EQ_INT(c.port, 1);
    CHECK_EQ_INT(im_config_set(opts, &c, "test_port", "65535", err, sizeof(err)), 0);
    CHECK_EQ_INT(c.port, 65535);
    CHECK_EQ_INT(im_config_set(opts, &c, "test-port", "0x1F90", err, sizeof(err)), 0);
    CHECK_EQ_INT(c.port, 8080);
    CHECK_EQ_INT(im_config_set(opts, &c, "test_port", "+80", err, sizeof(err)), 0);
    CHECK_EQ_INT(c.port, 80);

    const char *bad[] = {"0", "65536", "-1",  "", "0x", "12 ", " 12", "1k", "99999999999999999999",
                         "-", "1.5",   "0xZZ"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CHECK_EQ_INT(im_config_set(opts, &c, "test_port", bad[i], err, sizeof(err)), -1);
        CHECK(strstr(err, "test_port") != NULL);
    }
    CHECK_EQ_INT(c.port, 80); /* unchanged */
    CHECK(strstr(err, "bad number") || strstr(err, "range"));
    CHECK_EQ_INT(im_config_set(opts, &c, "test_port", "70000", err, sizeof(err)), -1);
    CHECK(strstr(err, "range") != NULL);

    CHECK_EQ_INT(im_config_set(opts, &c, "nope", "1", err, sizeof(err)), -1);
    CHECK(strstr(err, "nope") != NULL);

    CHECK_EQ_INT(im_config_set(opts, &c, "secret", "abc", err, sizeof(err)), 0);
    CHECK_EQ_INT(im_config_set(opts, &c, "secret", "def", err, sizeof(err)), 0);
    CHECK_EQ_STR(c.secret, "def");
    im_config_free(opts, &c);
}

TEST(config_bool_parsing)
{
    clear_env();
    tcfg_t c;
    const char *argv[] = {"prog"};
    CHECK_EQ_INT(load(&c, 1, argv), 0);
    char err[256];
    const char *yes[] = {"1", "true", "yes", "on", "TRUE", "Yes", "ON"};
    const char *no[] = {"0", "false", "no", "off", "False", "NO", "Off"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        c.verbose = 0;
        CHECK_EQ_INT(im_config_set(opts, &c, "verbose", yes[i], err, sizeof(err)), 0);
        CHECK_EQ_INT(c.verbose, 1);
        CHECK_EQ_INT(im_config_set(opts, &c, "verbose", no[i], err, sizeof(err)), 0);
        CHECK_EQ_INT(c.verbose, 0);
    }
    const char *bad[] = {"", "2", "y", "n", "truee", "enable"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK_EQ_INT(im_config_set(opts, &c, "verbose", bad[i], err, sizeof(err)), -1);
    im_config_free(opts, &c);

    /* flag without a value, followed by another flag */
    const char *a1[] = {"prog", "--verbose", "--test-port", "5"};
    CHECK_EQ_INT(load(&c, 4, a1), 0);
    CHECK_EQ_INT(c.verbose, 1);
    CHECK_EQ_INT(c.port, 5);
    im_config_free(opts, &c);
    const char *a2[] = {"prog", "--verbose", "no"};
    CHECK_EQ_INT(load(&c, 3, a2), 0);
    CHECK_EQ_INT(c.verbose, 0);
    im_config_free(opts, &c);
    const char *a3[] = {"prog", "--verbose"};
    CHECK_EQ_INT(load(&c, 2, a3), 0);
    CHECK_EQ_INT(c.verbose, 1);
    im_config_free(opts, &c);
}

TEST(config_help)
{
    clear_env();
    fflush(stdout);
    char path[] = "/tmp/cim_test_help_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    int saved = dup(STDOUT_FILENO);
    dup2(fd, STDOUT_FILENO);
    tcfg_t c;
    const char *a1[] = {"prog", "--test-port", "5", "--help"};
    int rc1 = load(&c, 4, a1);
    const char *a2[] = {"prog", "-h"};
    int rc2 = load(&c, 2, a2);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    CHECK_EQ_INT(rc1, 1);
    CHECK_EQ_INT(rc2, 1);
    CHECK(c.host == NULL);
    char buf[8192];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    CHECK(n > 0);
    buf[n] = '\0';
    CHECK(strstr(buf, "Usage: test") != NULL);
    CHECK(strstr(buf, "test_port") != NULL);
    CHECK(strstr(buf, "TCP port") != NULL);
    CHECK(strstr(buf, "max_packet") != NULL);
    CHECK(strstr(buf, "65535") != NULL);
}

TEST_MAIN()
