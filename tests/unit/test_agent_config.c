/* agent_config: every flag, one-line errors, precedence flags > file > env > defaults. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent_config.h"
#include "agent/sink/sink.h"
#include "common/log.h"

static char yaml_path[64];

static void cleanup(void)
{
	if (yaml_path[0])
		unlink(yaml_path);
	yaml_path[0] = 0;
	unsetenv("TAPIO_NODE_NAME");
	unsetenv("TAPIO_AGENT_ID");
}

static const char *write_yaml(const char *text)
{
	int fd;

	snprintf(yaml_path, sizeof(yaml_path), "/tmp/tapio-agent-yaml-XXXXXX");
	fd = mkstemp(yaml_path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return yaml_path;
}

static int parse(struct agent_config *c, char *err, size_t errlen, ...)
{
	char *argv[32] = {"tapio-agent"};
	int argc = 1;
	va_list ap;
	char *a;
	FILE *out = fopen("/dev/null", "w");
	int rc;

	va_start(ap, errlen);
	while ((a = va_arg(ap, char *)) != NULL)
		argv[argc++] = a;
	va_end(ap);
	err[0] = 0;
	rc = agent_config_parse(argc, argv, c, out, err, errlen);
	fclose(out);
	return rc;
}

TestSuite(agent_config, .fini = cleanup, .timeout = 10);

Test(agent_config, defaults)
{
	struct agent_config c;
	char err[256], host[256] = "";

	unsetenv("TAPIO_NODE_NAME");
	unsetenv("TAPIO_AGENT_ID");
	cr_assert_eq(parse(&c, err, sizeof(err), NULL), AGENT_CONFIG_RUN, "%s", err);
	gethostname(host, sizeof(host) - 1);
	cr_assert_eq(c.sinks, AGENT_SINK_STDOUT);
	cr_assert_str_eq(c.data_dir, "/var/lib/tapio");
	cr_assert_str_eq(c.node_name, host);
	cr_assert_str_eq(c.cluster, "");
	cr_assert_eq(strlen(c.agent_id), 26, "generated ULID: %s", c.agent_id);
	cr_assert_str_eq(c.config_file, "");
	cr_assert_eq(c.log_level, LOG_INFO);
	cr_assert_eq(c.stats_interval_s, 60);
	cr_assert_eq(c.file_max_bytes, 16u << 20);
	cr_assert_eq(c.file_max_files, 5);
	cr_assert_eq(c.settings.storage_warning_ms, 50);
}

Test(agent_config, environment_identity)
{
	struct agent_config c;
	char err[256];

	setenv("TAPIO_NODE_NAME", "env-node", 1);
	setenv("TAPIO_AGENT_ID", "env-agent", 1);
	cr_assert_eq(parse(&c, err, sizeof(err), NULL), AGENT_CONFIG_RUN, "%s", err);
	cr_assert_str_eq(c.node_name, "env-node");
	cr_assert_str_eq(c.agent_id, "env-agent");
	cr_assert_eq(
	    parse(&c, err, sizeof(err), "--node-name", "flag-node", "--agent-id", "a1", NULL),
	    AGENT_CONFIG_RUN);
	cr_assert_str_eq(c.node_name, "flag-node");
	cr_assert_str_eq(c.agent_id, "a1");
}

Test(agent_config, every_flag)
{
	struct agent_config c;
	char err[256];

	cr_assert_eq(parse(&c, err, sizeof(err), "--sink", "file", "--sink=stdout", "--data-dir",
			   "/tmp/tapio-x", "--node-name", "n1", "--cluster=prod", "--agent-id",
			   "id-7", "--log-level", "debug", "--stats-interval", "5",
			   "--file-max-bytes", "65536", "--file-max-files=3", NULL),
		     AGENT_CONFIG_RUN, "%s", err);
	cr_assert_eq(c.sinks, AGENT_SINK_STDOUT | AGENT_SINK_FILE);
	cr_assert_str_eq(c.data_dir, "/tmp/tapio-x");
	cr_assert_str_eq(c.node_name, "n1");
	cr_assert_str_eq(c.cluster, "prod");
	cr_assert_str_eq(c.agent_id, "id-7");
	cr_assert_eq(c.log_level, LOG_DEBUG);
	cr_assert_eq(c.stats_interval_s, 5);
	cr_assert_eq(c.file_max_bytes, 65536);
	cr_assert_eq(c.file_max_files, 3);
	cr_assert_eq(parse(&c, err, sizeof(err), "--sink", "file", NULL), AGENT_CONFIG_RUN);
	cr_assert_eq(c.sinks, AGENT_SINK_FILE, "--sink replaces the default");
}

Test(agent_config, help_and_version_print_and_exit)
{
	struct agent_config c;
	char err[256], buf[4096] = "";
	char *argv[] = {"tapio-agent", "--version", NULL};
	FILE *out = fmemopen(buf, sizeof(buf), "w");

	cr_assert_eq(agent_config_parse(2, argv, &c, out, err, sizeof(err)), AGENT_CONFIG_EXIT);
	fclose(out);
	cr_assert_str_eq(buf, "tapio-agent " TAPIO_VERSION "\n");
	argv[1] = "-h";
	out = fmemopen(buf, sizeof(buf), "w");
	cr_assert_eq(agent_config_parse(2, argv, &c, out, err, sizeof(err)), AGENT_CONFIG_EXIT);
	fclose(out);
	cr_assert(strstr(buf, "--file-max-files") != NULL);
	cr_assert(strncmp(buf, "Usage: tapio-agent", 18) == 0);
}

struct bad_flag {
	const char *args[4];
	const char *msg;
};

static const struct bad_flag bad_flags[] = {
    {{"--foo"}, "unknown option '--foo' (see --help)"},
    {{"--foo=1"}, "unknown option '--foo' (see --help)"},
    {{"-x"}, "unknown option '-x' (see --help)"},
    {{"extra"}, "unexpected argument 'extra' (see --help)"},
    {{"--sink"}, "option '--sink' needs a value (see --help)"},
    {{"--sink", "kafka"}, "invalid value 'kafka' for --sink (expected stdout, file or controller)"},
    {{"--sink", "controller"},
     "the controller sink needs --controller HOST:PORT (or controller.address in the config "
     "file)"},
    {{"--controller", "ctl"},
     "invalid value 'ctl' for --controller (expected HOST:PORT or [v6]:PORT)"},
    {{"--controller", "ctl:0"},
     "invalid value 'ctl:0' for --controller (expected HOST:PORT or [v6]:PORT)"},
    {{"--heartbeat-interval", "0"},
     "invalid value '0' for --heartbeat-interval (expected seconds 1..3600)"},
    {{"--spool-max-bytes", "1000"},
     "invalid value '1000' for --spool-max-bytes (expected bytes 65536..1099511627776)"},
    {{"--queue-max-bytes", "1k"},
     "invalid value '1k' for --queue-max-bytes (expected bytes 65536..4294967296)"},
    {{"--log-level", "loud"},
     "invalid value 'loud' for --log-level (expected debug, info, warn or error)"},
    {{"--stats-interval", "-1"},
     "invalid value '-1' for --stats-interval (expected seconds 0..86400)"},
    {{"--stats-interval", "10s"},
     "invalid value '10s' for --stats-interval (expected seconds 0..86400)"},
    {{"--file-max-bytes", "100"},
     "invalid value '100' for --file-max-bytes (expected bytes 4096..1099511627776)"},
    {{"--file-max-files", "1"}, "invalid value '1' for --file-max-files (expected 2..1000)"},
    {{"--node-name", ""}, "invalid value '' for --node-name (expected 1..63 printable characters)"},
    {{"--help=yes"}, "option '--help' takes no value"},
    {{"--config", "/nonexistent.yaml"}, "/nonexistent.yaml: No such file or directory"},
};

Test(agent_config, bad_flags_give_one_line)
{
	for (size_t i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++) {
		struct agent_config c;
		char err[256];
		const char *const *a = bad_flags[i].args;
		int rc = parse(&c, err, sizeof(err), a[0], a[1], a[2], NULL);

		cr_expect_lt(rc, 0, "case %zu accepted", i);
		cr_expect_str_eq(err, bad_flags[i].msg, "case %zu", i);
		cr_expect_null(strchr(err, '\n'));
	}
}

Test(agent_config, file_then_flags_precedence)
{
	struct agent_config c;
	char err[256];
	const char *p = write_yaml("sinks: [file]\n"
				   "data_dir: /tmp/from-file\n"
				   "node_name: file-node\n"
				   "cluster: file-cluster\n"
				   "agent_id: file-agent\n"
				   "log_level: warn\n"
				   "stats_interval: 30\n"
				   "file_max_bytes: 1048576\n"
				   "file_max_files: 7\n"
				   "storage:\n"
				   "  warning_ms: 80\n"
				   "  critical_ms: 400\n");

	setenv("TAPIO_NODE_NAME", "env-node", 1);
	cr_assert_eq(parse(&c, err, sizeof(err), "--config", p, NULL), AGENT_CONFIG_RUN, "%s", err);
	cr_assert_str_eq(c.config_file, p);
	cr_assert_eq(c.sinks, AGENT_SINK_FILE);
	cr_assert_str_eq(c.data_dir, "/tmp/from-file");
	cr_assert_str_eq(c.node_name, "file-node", "file beats environment");
	cr_assert_str_eq(c.cluster, "file-cluster");
	cr_assert_str_eq(c.agent_id, "file-agent");
	cr_assert_eq(c.log_level, LOG_WARN);
	cr_assert_eq(c.stats_interval_s, 30);
	cr_assert_eq(c.file_max_bytes, 1048576);
	cr_assert_eq(c.file_max_files, 7);
	cr_assert_eq(c.settings.storage_warning_ms, 80);
	cr_assert_eq(c.settings.storage_critical_ms, 400);

	/* flags beat the file, whichever side of --config they stand on */
	cr_assert_eq(parse(&c, err, sizeof(err), "--sink", "stdout", "--config", p, "--node-name",
			   "flag-node", "--stats-interval", "0", "--file-max-files", "2", NULL),
		     AGENT_CONFIG_RUN, "%s", err);
	cr_assert_eq(c.sinks, AGENT_SINK_STDOUT);
	cr_assert_str_eq(c.node_name, "flag-node");
	cr_assert_str_eq(c.data_dir, "/tmp/from-file");
	cr_assert_eq(c.stats_interval_s, 0);
	cr_assert_eq(c.file_max_files, 2);
	cr_assert_eq(c.settings.storage_warning_ms, 80);
}

Test(agent_config, bad_file_is_one_located_line)
{
	struct agent_config c;
	char err[256], want[300];
	const char *p = write_yaml("node_name: x\nstorage:\n  warnign_ms: 3\n");

	cr_assert_lt(parse(&c, err, sizeof(err), "--config", p, NULL), 0);
	snprintf(want, sizeof(want), "%s:3:3: unknown key 'storage.warnign_ms'", p);
	cr_assert_str_eq(err, want);
	cleanup();
	p = write_yaml("sinks: [stdout, kafka]\n");
	cr_assert_lt(parse(&c, err, sizeof(err), "--config", p, NULL), 0);
	snprintf(want, sizeof(want), "%s:1:17: sinks: expected 'stdout', 'file' or 'controller'",
		 p);
	cr_assert_str_eq(err, want);
	cleanup();
	p = write_yaml("stats_interval: 99999999\n");
	cr_assert_lt(parse(&c, err, sizeof(err), "--config", p, NULL), 0);
	snprintf(want, sizeof(want), "%s:1:17: stats_interval: 99999999 out of range 0..86400", p);
	cr_assert_str_eq(err, want);
	cleanup();
	p = write_yaml("nodename: x\n");
	cr_assert_lt(parse(&c, err, sizeof(err), "--config", p, NULL), 0);
	snprintf(want, sizeof(want), "%s:1:1: unknown key 'nodename'", p);
	cr_assert_str_eq(err, want);
}

Test(agent_config, controller_defaults_flags_and_file)
{
	struct agent_config c;
	char err[256], buf[PATH_MAX];
	const char *p;

	cr_assert_eq(parse(&c, err, sizeof(err), "--data-dir", "/tmp/dd", NULL), AGENT_CONFIG_RUN);
	cr_assert_eq(c.controller[0], 0);
	cr_assert_eq(c.heartbeat_interval_s, 10);
	cr_assert_eq(c.spool_max_bytes, 256ull << 20);
	cr_assert_eq(c.queue_max_bytes, 8ull << 20);
	cr_assert_str_eq(agent_config_spool_dir(&c, buf, sizeof(buf)), "/tmp/dd/spool");

	cr_assert_eq(parse(&c, err, sizeof(err), "--sink", "stdout", "--sink", "controller",
			   "--controller", "[::1]:7070", "--heartbeat-interval", "2", "--spool-dir",
			   "/tmp/sp", "--spool-max-bytes", "65536", "--queue-max-bytes=131072",
			   NULL),
		     AGENT_CONFIG_RUN, "%s", err);
	cr_assert_eq(c.sinks, AGENT_SINK_STDOUT | AGENT_SINK_CONTROLLER);
	cr_assert_str_eq(c.controller, "[::1]:7070");
	cr_assert_eq(c.heartbeat_interval_s, 2);
	cr_assert_str_eq(agent_config_spool_dir(&c, buf, sizeof(buf)), "/tmp/sp");
	cr_assert_eq(c.spool_max_bytes, 65536);
	cr_assert_eq(c.queue_max_bytes, 131072);

	p = write_yaml("sinks: [controller, file]\n"
		       "controller:\n"
		       "  address: ctl.example:7070\n"
		       "  heartbeat_interval_s: 5\n"
		       "  spool_dir: /tmp/file-spool\n"
		       "  spool_max_bytes: 1048576\n"
		       "  queue_max_bytes: 262144\n");
	cr_assert_eq(parse(&c, err, sizeof(err), "--config", p, NULL), AGENT_CONFIG_RUN, "%s", err);
	cr_assert_eq(c.sinks, AGENT_SINK_CONTROLLER | AGENT_SINK_FILE);
	cr_assert_str_eq(c.controller, "ctl.example:7070");
	cr_assert_eq(c.heartbeat_interval_s, 5);
	cr_assert_str_eq(c.spool_dir, "/tmp/file-spool");
	cr_assert_eq(c.spool_max_bytes, 1048576);
	cr_assert_eq(c.queue_max_bytes, 262144);
	/* flags beat the file */
	cr_assert_eq(parse(&c, err, sizeof(err), "--config", p, "--controller", "other:1", NULL),
		     AGENT_CONFIG_RUN, "%s", err);
	cr_assert_str_eq(c.controller, "other:1");
}

Test(agent_config, bad_controller_section_is_one_located_line)
{
	struct agent_config c;
	char err[256], want[300];
	const char *p = write_yaml("controller:\n  adress: x:1\n");

	cr_assert_lt(parse(&c, err, sizeof(err), "--config", p, NULL), 0);
	snprintf(want, sizeof(want), "%s:2:3: unknown key 'controller.adress'", p);
	cr_assert_str_eq(err, want);
	cleanup();
	p = write_yaml("controller:\n  address: nope\n");
	cr_assert_lt(parse(&c, err, sizeof(err), "--config", p, NULL), 0);
	snprintf(want, sizeof(want),
		 "%s:2:12: controller.address: expected HOST:PORT or [v6]:PORT, got 'nope'", p);
	cr_assert_str_eq(err, want);
	cleanup();
	p = write_yaml("controller:\n  heartbeat_interval_s: 0\n");
	cr_assert_lt(parse(&c, err, sizeof(err), "--config", p, NULL), 0);
	cr_assert(strstr(err, "controller.heartbeat_interval_s") != NULL, "%s", err);
	cleanup();
	p = write_yaml("sinks: controller\n");
	cr_assert_lt(parse(&c, err, sizeof(err), "--config", p, NULL), 0);
	cr_assert(strstr(err, "the controller sink needs --controller") == err, "%s", err);
}

/* ---- the real binary ---- */

static int run_agent(char *const argv[], char *out, size_t outlen, char *errbuf, size_t errlen)
{
	int po[2], pe[2], status;
	pid_t pid;
	ssize_t n;

	cr_assert_eq(pipe(po), 0);
	cr_assert_eq(pipe(pe), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(po[1], 1);
		dup2(pe[1], 2);
		execv(TAPIO_BIN_DIR "/tapio-agent", argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	n = read(po[0], out, outlen - 1);
	out[n > 0 ? n : 0] = 0;
	n = read(pe[0], errbuf, errlen - 1);
	errbuf[n > 0 ? n : 0] = 0;
	close(po[0]);
	close(pe[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TestSuite(agent_binary, .timeout = 20);

Test(agent_binary, bad_flag_exits_2_with_one_line)
{
	char out[4096], err[4096];
	char *argv[] = {"tapio-agent", "--foo", NULL};

	if (access(TAPIO_BIN_DIR "/tapio-agent", X_OK) != 0)
		cr_skip_test("tapio-agent not built (needs BPF toolchain): " TAPIO_BIN_DIR);
	cr_assert_eq(run_agent(argv, out, sizeof(out), err, sizeof(err)), 2);
	cr_assert_str_eq(err, "tapio-agent: unknown option '--foo' (see --help)\n");
	cr_assert_str_eq(out, "");
}

Test(agent_binary, version_and_help_exit_0_on_stdout)
{
	char out[8192], err[4096];
	char *argv[] = {"tapio-agent", "--version", NULL};

	if (access(TAPIO_BIN_DIR "/tapio-agent", X_OK) != 0)
		cr_skip_test("tapio-agent not built (needs BPF toolchain): " TAPIO_BIN_DIR);
	cr_assert_eq(run_agent(argv, out, sizeof(out), err, sizeof(err)), 0);
	cr_assert_str_eq(out, "tapio-agent " TAPIO_VERSION "\n");
	cr_assert_str_eq(err, "");
	argv[1] = "--help";
	cr_assert_eq(run_agent(argv, out, sizeof(out), err, sizeof(err)), 0);
	cr_assert(strstr(out, "--sink stdout|file") != NULL);
}

Test(agent_binary, bad_config_file_exits_2)
{
	char out[4096], err[4096];
	char *argv[] = {"tapio-agent", "--config", NULL, NULL};

	if (access(TAPIO_BIN_DIR "/tapio-agent", X_OK) != 0)
		cr_skip_test("tapio-agent not built (needs BPF toolchain): " TAPIO_BIN_DIR);
	argv[2] = (char *)write_yaml("storage:\n  critical_ms: 10\n");
	cr_assert_eq(run_agent(argv, out, sizeof(out), err, sizeof(err)), 2);
	cr_assert(strstr(err, ":2:16: storage.critical_ms: 10 is below storage.warning_ms 50\n") !=
		      NULL,
		  "%s", err);
	cr_assert_eq(strchr(err, '\n'), err + strlen(err) - 1, "one line: %s", err);
	cleanup();
}

Test(agent_config, generated_agent_id_is_kept_in_the_data_dir)
{
	struct agent_config c;
	int rc;
	char err[256], dir[64] = "/tmp/tapio-id-XXXXXX", first[AGENT_ID_LEN], path[128], cmd[128];
	FILE *f;

	unsetenv("TAPIO_AGENT_ID");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(parse(&c, err, sizeof(err), "--data-dir", dir, NULL), AGENT_CONFIG_RUN);
	cr_assert(c.agent_id_generated);
	rc = agent_config_persist_id(&c);
	cr_assert_eq(rc, 0, "first start stores the id: %d", rc);
	snprintf(first, sizeof(first), "%s", c.agent_id);
	snprintf(path, sizeof(path), "%s/agent-id", dir);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	fclose(f);

	cr_assert_eq(parse(&c, err, sizeof(err), "--data-dir", dir, NULL), AGENT_CONFIG_RUN);
	cr_assert_str_neq(c.agent_id, first, "a fresh ULID before persist");
	cr_assert_eq(agent_config_persist_id(&c), 1, "second start reuses it");
	cr_assert_str_eq(c.agent_id, first);

	cr_assert_eq(parse(&c, err, sizeof(err), "--data-dir", dir, "--agent-id", "explicit", NULL),
		     AGENT_CONFIG_RUN);
	cr_assert_eq(agent_config_persist_id(&c), 0);
	cr_assert_str_eq(c.agent_id, "explicit", "an explicit id wins and is not stored");

	cr_assert_eq(parse(&c, err, sizeof(err), "--data-dir", "/nonexistent/tapio", NULL),
		     AGENT_CONFIG_RUN);
	cr_assert_eq(agent_config_persist_id(&c), -ENOENT);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}
