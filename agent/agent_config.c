/*
 * Command line and local config file of tapio-agent. Hand-written instead of getopt_long so
 * that every mistake gives exactly one line in our own words and the parser is reentrant
 * (tests call it many times in one process).
 */
#include "agent/agent_config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/client/client.h"
#include "agent/sink/sink.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/settings_yaml.h"
#include "common/ulid.h"

#define MAX_STATS_INTERVAL 86400u
#define MAX_FILE_BYTES	   (1ull << 40)
#define MAX_FILE_FILES	   1000u
#define MAX_HEARTBEAT	   3600u
#define MAX_SPOOL_BYTES	   (1ull << 40)
#define MAX_QUEUE_BYTES	   (4ull << 30)

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
						      ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void agent_config_usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: tapio-agent [options]\n"
	    "Watches kernel failure facts with eBPF and writes occurrences as JSON lines.\n"
	    "\n"
	    "  --sink stdout|file|controller  where occurrences go (repeatable; default stdout)\n"
	    "  --data-dir DIR            directory of the file sink and the spool (default %s)\n"
	    "  --node-name NAME          node name (default $TAPIO_NODE_NAME, else hostname)\n"
	    "  --cluster NAME            cluster name put in every occurrence (default empty)\n"
	    "  --agent-id ID             agent identity (default $TAPIO_AGENT_ID, else a new ULID)\n"
	    "  --config FILE             YAML config file (flags override it)\n"
	    "  --log-level LEVEL         debug|info|warn|error (default info)\n"
	    "  --stats-interval SECONDS  period of the counters log line, 0 = off (default %u)\n"
	    "  --file-max-bytes N        rotate the current file before it exceeds N bytes (default %u)\n"
	    "  --file-max-files N        files kept by the file sink, current one included (default %u)\n"
	    "  --controller HOST:PORT    tapio-controller address (required with --sink controller)\n"
	    "  --heartbeat-interval SECONDS  controller heartbeat period (default %u)\n"
	    "  --spool-dir DIR           on-disk spool of unacknowledged batches (default DATA_DIR/spool)\n"
	    "  --spool-max-bytes N       spool bound; the oldest evidence is dropped and counted (default %llu)\n"
	    "  --queue-max-bytes N       in-memory batch queue bound (default %llu)\n"
	    "  --tls-ca FILE             TLS 1.3 to the controller, verified against this CA\n"
	    "  --tls-cert FILE           client certificate for mutual TLS (with --tls-key)\n"
	    "  --tls-key FILE            its private key\n"
	    "  --tls-server-name NAME    name the controller certificate must carry (default: host)\n"
	    "  --token TOKEN             shared token sent in Hello (see --token-file)\n"
	    "  --token-file FILE         read the token from FILE (keeps it out of ps)\n"
	    "  -h, --help                print this help and exit\n"
	    "  -V, --version             print the version and exit\n"
	    "\n"
	    "Occurrences go to stdout, logs to stderr: tapio-agent | jq is safe.\n",
	    AGENT_DEFAULT_DATA_DIR, AGENT_DEFAULT_STATS_INTERVAL, SINK_FILE_MAX_BYTES,
	    SINK_FILE_MAX_FILES, AGENT_DEFAULT_HEARTBEAT,
	    (unsigned long long)AGENT_DEFAULT_SPOOL_BYTES,
	    (unsigned long long)AGENT_DEFAULT_QUEUE_BYTES);
}

static int parse_uint(const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long x;

	if (!*v || *v == '-' || *v == '+')
		return -EINVAL;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || *end || x < min || x > max)
		return -EINVAL;
	*out = x;
	return 0;
}

static int set_name(char *dst, size_t dstlen, const char *v)
{
	size_t l = strlen(v);

	if (l == 0 || l >= dstlen)
		return -EINVAL;
	for (size_t i = 0; i < l; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == '"' || v[i] == '\\')
			return -EINVAL;
	memcpy(dst, v, l + 1);
	return 0;
}

static int sink_bit(const char *v)
{
	if (strcmp(v, "stdout") == 0)
		return AGENT_SINK_STDOUT;
	if (strcmp(v, "file") == 0)
		return AGENT_SINK_FILE;
	if (strcmp(v, "controller") == 0)
		return AGENT_SINK_CONTROLLER;
	return -1;
}

static void set_defaults(struct agent_config *c)
{
	const char *env;
	char host[256] = "";

	memset(c, 0, sizeof(*c));
	c->sinks = AGENT_SINK_STDOUT;
	snprintf(c->data_dir, sizeof(c->data_dir), "%s", AGENT_DEFAULT_DATA_DIR);
	env = getenv("TAPIO_NODE_NAME");
	if (!env || set_name(c->node_name, sizeof(c->node_name), env) < 0) {
		if (gethostname(host, sizeof(host) - 1) < 0 ||
		    set_name(c->node_name, sizeof(c->node_name), host) < 0)
			snprintf(c->node_name, sizeof(c->node_name), "unknown");
	}
	env = getenv("TAPIO_AGENT_ID");
	if (!env || set_name(c->agent_id, sizeof(c->agent_id), env) < 0) {
		ulid_generate(clock_wall_ns() / 1000000ull, c->agent_id);
		c->agent_id_generated = true;
	}
	c->log_level = LOG_INFO;
	c->stats_interval_s = AGENT_DEFAULT_STATS_INTERVAL;
	c->file_max_bytes = SINK_FILE_MAX_BYTES;
	c->file_max_files = SINK_FILE_MAX_FILES;
	c->heartbeat_interval_s = AGENT_DEFAULT_HEARTBEAT;
	c->spool_max_bytes = AGENT_DEFAULT_SPOOL_BYTES;
	c->queue_max_bytes = AGENT_DEFAULT_QUEUE_BYTES;
	settings_defaults(&c->settings);
}

/* ---- config file ---- */

static const char *const agent_keys[] = {
    "sinks",	      "data_dir",	"node_name",	  "cluster",	"agent_id", "log_level",
    "stats_interval", "file_max_bytes", "file_max_files", "controller", NULL,
};

static int check_endpoint(const char *v)
{
	char host[AGENT_CONTROLLER_LEN];
	uint16_t port;

	if (strlen(v) >= AGENT_CONTROLLER_LEN)
		return -EINVAL;
	return client_parse_endpoint(v, host, sizeof(host), &port);
}

/* The string-valued transport security keys of `controller:` and where they go. */
struct tls_slot {
	char *buf;
	size_t len;
};

/* Finds the field of `controller.<key>`; returns false when key is not one of them. */
static bool tls_key_slot(struct agent_config *c, const char *key, struct tls_slot *sl)
{
	sl->buf = NULL;
	if (strcmp(key, "tls_ca") == 0)
		*sl = (struct tls_slot){c->tls_ca, sizeof(c->tls_ca)};
	else if (strcmp(key, "tls_cert") == 0)
		*sl = (struct tls_slot){c->tls_cert, sizeof(c->tls_cert)};
	else if (strcmp(key, "tls_key") == 0)
		*sl = (struct tls_slot){c->tls_key, sizeof(c->tls_key)};
	else if (strcmp(key, "tls_server_name") == 0)
		*sl = (struct tls_slot){c->tls_server_name, sizeof(c->tls_server_name)};
	else if (strcmp(key, "token") == 0)
		*sl = (struct tls_slot){c->token, sizeof(c->token)};
	else if (strcmp(key, "token_file") == 0)
		*sl = (struct tls_slot){c->token_file, sizeof(c->token_file)};
	return sl->buf != NULL;
}

/* The `controller:` mapping: address, heartbeat_interval_s, spool_dir, spool_*, queue_*. */
static int controller_section(const char *label, yaml_document_t *doc, yaml_node_t *m,
			      struct agent_config *c, char *err, size_t errlen)
{
	char buf[PATH_MAX];
	struct tls_slot sl;
	uint64_t x;
	int rc;

	if (m->type != YAML_MAPPING_NODE)
		return settings_yaml_error(err, errlen, label, m,
					   "controller: expected a mapping (address, "
					   "heartbeat_interval_s, spool_dir, spool_max_bytes, "
					   "queue_max_bytes, tls_ca, tls_cert, tls_key, "
					   "tls_server_name, token, token_file)");
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		yaml_node_t *v = yaml_document_get_node(doc, p->value);
		const char *key =
		    k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "";

		for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *qk = yaml_document_get_node(doc, q->key);
			if (qk->type == YAML_SCALAR_NODE &&
			    strcmp((const char *)qk->data.scalar.value, key) == 0)
				return settings_yaml_error(err, errlen, label, k,
							   "duplicate key 'controller.%s'", key);
		}
		if (strcmp(key, "address") == 0) {
			if ((rc = settings_yaml_string(label, v, "controller.address", buf,
						       sizeof(buf), err, errlen)) < 0)
				return rc;
			if (check_endpoint(buf) < 0)
				return settings_yaml_error(
				    err, errlen, label, v,
				    "controller.address: expected HOST:PORT or [v6]:PORT, got '%s'",
				    buf);
			memcpy(c->controller, buf, strlen(buf) + 1); /* checked: fits */
		} else if (strcmp(key, "heartbeat_interval_s") == 0) {
			if ((rc = settings_yaml_uint(label, v, "controller.heartbeat_interval_s", 1,
						     MAX_HEARTBEAT, &x, err, errlen)) < 0)
				return rc;
			c->heartbeat_interval_s = (uint32_t)x;
		} else if (strcmp(key, "spool_dir") == 0) {
			if ((rc = settings_yaml_string(label, v, "controller.spool_dir",
						       c->spool_dir, sizeof(c->spool_dir), err,
						       errlen)) < 0)
				return rc;
		} else if (strcmp(key, "spool_max_bytes") == 0) {
			if ((rc = settings_yaml_uint(label, v, "controller.spool_max_bytes",
						     AGENT_MIN_SPOOL_BYTES, MAX_SPOOL_BYTES, &x,
						     err, errlen)) < 0)
				return rc;
			c->spool_max_bytes = x;
		} else if (strcmp(key, "queue_max_bytes") == 0) {
			if ((rc = settings_yaml_uint(label, v, "controller.queue_max_bytes",
						     AGENT_MIN_QUEUE_BYTES, MAX_QUEUE_BYTES, &x,
						     err, errlen)) < 0)
				return rc;
			c->queue_max_bytes = x;
		} else if (tls_key_slot(c, key, &sl)) {
			char name[64];

			snprintf(name, sizeof(name), "controller.%s", key);
			if ((rc = settings_yaml_string(label, v, name, sl.buf, sl.len, err,
						       errlen)) < 0)
				return rc;
		} else {
			return settings_yaml_error(err, errlen, label, k,
						   "unknown key 'controller.%s'", key);
		}
	}
	return 0;
}

static int file_key(const char *label, yaml_document_t *doc, const char *key, yaml_node_t *v,
		    struct agent_config *c, char *err, size_t errlen)
{
	char buf[PATH_MAX];
	uint64_t x;
	int rc;

	if (strcmp(key, "sinks") == 0) {
		unsigned mask = 0;
		if (v->type == YAML_SCALAR_NODE) {
			int b = sink_bit((const char *)v->data.scalar.value);
			if (b < 0)
				return settings_yaml_error(
				    err, errlen, label, v,
				    "sinks: unknown sink '%s' (stdout, file, controller)",
				    v->data.scalar.value);
			mask = (unsigned)b;
		} else if (v->type == YAML_SEQUENCE_NODE) {
			for (yaml_node_item_t *it = v->data.sequence.items.start;
			     it < v->data.sequence.items.top; it++) {
				yaml_node_t *item = yaml_document_get_node(doc, *it);
				int b = item->type == YAML_SCALAR_NODE
					    ? sink_bit((const char *)item->data.scalar.value)
					    : -1;
				if (b < 0)
					return settings_yaml_error(
					    err, errlen, label, item,
					    "sinks: expected 'stdout', 'file' or 'controller'");
				mask |= (unsigned)b;
			}
		}
		if (!mask)
			return settings_yaml_error(
			    err, errlen, label, v,
			    "sinks: expected stdout, file, controller or a list of them");
		c->sinks = mask;
		return 0;
	}
	if (strcmp(key, "data_dir") == 0)
		return settings_yaml_string(label, v, key, c->data_dir, sizeof(c->data_dir), err,
					    errlen);
	if (strcmp(key, "node_name") == 0 || strcmp(key, "cluster") == 0 ||
	    strcmp(key, "agent_id") == 0) {
		char *dst = key[0] == 'n' ? c->node_name : key[0] == 'c' ? c->cluster : c->agent_id;
		size_t len = key[0] == 'a' ? sizeof(c->agent_id) : TAPIO_NAME_LEN;
		if ((rc = settings_yaml_string(label, v, key, buf, sizeof(buf), err, errlen)) < 0)
			return rc;
		if ((buf[0] || key[0] != 'c') && set_name(dst, len, buf) < 0)
			return settings_yaml_error(err, errlen, label, v,
						   "%s: must be 1..%zu printable characters", key,
						   len - 1);
		if (!buf[0])
			dst[0] = 0;
		if (key[0] == 'a')
			c->agent_id_generated = false;
		return 0;
	}
	if (strcmp(key, "log_level") == 0) {
		int lvl;
		if ((rc = settings_yaml_string(label, v, key, buf, sizeof(buf), err, errlen)) < 0)
			return rc;
		lvl = log_level_parse(buf);
		if (lvl < 0)
			return settings_yaml_error(
			    err, errlen, label, v,
			    "log_level: expected debug, info, warn or error, got '%s'", buf);
		c->log_level = lvl;
		return 0;
	}
	if (strcmp(key, "stats_interval") == 0) {
		if ((rc = settings_yaml_uint(label, v, key, 0, MAX_STATS_INTERVAL, &x, err,
					     errlen)) < 0)
			return rc;
		c->stats_interval_s = (uint32_t)x;
		return 0;
	}
	if (strcmp(key, "file_max_bytes") == 0) {
		if ((rc = settings_yaml_uint(label, v, key, SINK_FILE_MIN_MAX_BYTES, MAX_FILE_BYTES,
					     &x, err, errlen)) < 0)
			return rc;
		c->file_max_bytes = x;
		return 0;
	}
	if (strcmp(key, "file_max_files") == 0) {
		if ((rc = settings_yaml_uint(label, v, key, 2, MAX_FILE_FILES, &x, err, errlen)) <
		    0)
			return rc;
		c->file_max_files = (uint32_t)x;
		return 0;
	}
	if (strcmp(key, "controller") == 0)
		return controller_section(label, doc, v, c, err, errlen);
	return settings_yaml_error(err, errlen, label, v, "unknown key '%s'", key);
}

int agent_config_load_file(const char *path, struct agent_config *c, char *err, size_t errlen)
{
	yaml_document_t doc;
	yaml_node_t *root;
	int rc = settings_yaml_load_document(path, &doc, err, errlen);

	if (rc < 0)
		return rc;
	root = yaml_document_get_root_node(&doc);
	if (!root || (root->type == YAML_SCALAR_NODE && !root->data.scalar.length))
		goto out; /* empty file: nothing to change */
	/* observer sections first (it also rejects unknown and duplicate keys) … */
	rc = settings_yaml_apply_ex(path, &doc, root, agent_keys, &c->settings, err, errlen);
	if (rc < 0)
		goto out;
	/* … then the agent's own keys */
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(&doc, p->key);
		yaml_node_t *v = yaml_document_get_node(&doc, p->value);
		const char *key = (const char *)k->data.scalar.value;
		bool ours = false;

		for (const char *const *a = agent_keys; *a; a++)
			if (strcmp(*a, key) == 0)
				ours = true;
		if (ours && (rc = file_key(path, &doc, key, v, c, err, errlen)) < 0)
			goto out;
	}
out:
	yaml_document_delete(&doc);
	return rc;
}

/* ---- persistent generated identity ---- */

int agent_config_persist_id(struct agent_config *c)
{
	char path[PATH_MAX + 16], tmp[PATH_MAX + 32], buf[AGENT_ID_LEN + 2];
	FILE *f;
	size_t n;
	int rc = 0;

	if (!c->agent_id_generated)
		return 0;
	snprintf(path, sizeof(path), "%s/agent-id", c->data_dir);
	f = fopen(path, "r");
	if (f) {
		n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = 0;
		buf[strcspn(buf, "\r\n")] = 0;
		if (set_name(c->agent_id, sizeof(c->agent_id), buf) == 0) {
			c->agent_id_generated = false;
			return 1;
		}
	} else if (errno != ENOENT) {
		return -errno;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	if (fprintf(f, "%s\n", c->agent_id) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0)
		rc = -errno;
	if (fclose(f) != 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) != 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

const char *agent_config_spool_dir(const struct agent_config *c, char *buf, size_t len)
{
	if (c->spool_dir[0])
		snprintf(buf, len, "%s", c->spool_dir);
	else
		snprintf(buf, len, "%s/%s", c->data_dir, AGENT_SPOOL_SUBDIR);
	return buf;
}

/* ---- command line ---- */

enum opt_id {
	O_SINK,
	O_DATA_DIR,
	O_NODE_NAME,
	O_CLUSTER,
	O_AGENT_ID,
	O_CONFIG,
	O_LOG_LEVEL,
	O_STATS_INTERVAL,
	O_FILE_MAX_BYTES,
	O_FILE_MAX_FILES,
	O_CONTROLLER,
	O_HEARTBEAT_INTERVAL,
	O_SPOOL_DIR,
	O_SPOOL_MAX_BYTES,
	O_QUEUE_MAX_BYTES,
	O_TLS_CA,
	O_TLS_CERT,
	O_TLS_KEY,
	O_TLS_SERVER_NAME,
	O_TOKEN,
	O_TOKEN_FILE,
	O_HELP,
	O_VERSION,
};

struct opt {
	const char *name;
	const char *alias;
	enum opt_id id;
	bool has_arg;
};

static const struct opt opts[] = {
    {"--sink", NULL, O_SINK, true},
    {"--data-dir", NULL, O_DATA_DIR, true},
    {"--node-name", NULL, O_NODE_NAME, true},
    {"--cluster", NULL, O_CLUSTER, true},
    {"--agent-id", NULL, O_AGENT_ID, true},
    {"--config", NULL, O_CONFIG, true},
    {"--log-level", NULL, O_LOG_LEVEL, true},
    {"--stats-interval", NULL, O_STATS_INTERVAL, true},
    {"--file-max-bytes", NULL, O_FILE_MAX_BYTES, true},
    {"--file-max-files", NULL, O_FILE_MAX_FILES, true},
    {"--controller", NULL, O_CONTROLLER, true},
    {"--heartbeat-interval", NULL, O_HEARTBEAT_INTERVAL, true},
    {"--spool-dir", NULL, O_SPOOL_DIR, true},
    {"--spool-max-bytes", NULL, O_SPOOL_MAX_BYTES, true},
    {"--queue-max-bytes", NULL, O_QUEUE_MAX_BYTES, true},
    {"--tls-ca", NULL, O_TLS_CA, true},
    {"--tls-cert", NULL, O_TLS_CERT, true},
    {"--tls-key", NULL, O_TLS_KEY, true},
    {"--tls-server-name", NULL, O_TLS_SERVER_NAME, true},
    {"--token", NULL, O_TOKEN, true},
    {"--token-file", NULL, O_TOKEN_FILE, true},
    {"--help", "-h", O_HELP, false},
    {"--version", "-V", O_VERSION, false},
};

struct parsed_opt {
	const struct opt *o;
	const char *value;
};

/*
 * Walks argv once; for each option calls back with its value. Returns 0 or -EINVAL with
 * err set. `index` lets a caller process options in order.
 */
static int next_opt(int argc, char **argv, int *i, struct parsed_opt *po, char *err, size_t errlen)
{
	const char *a = argv[*i];
	const char *eq = NULL;
	size_t nlen;

	po->o = NULL;
	po->value = NULL;
	if (a[0] != '-' || a[1] == 0)
		return fail(err, errlen, "unexpected argument '%s' (see --help)", a);
	if (a[1] == '-')
		eq = strchr(a, '=');
	nlen = eq ? (size_t)(eq - a) : strlen(a);
	for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]); k++) {
		if ((strlen(opts[k].name) == nlen && strncmp(opts[k].name, a, nlen) == 0) ||
		    (opts[k].alias && !eq && strcmp(opts[k].alias, a) == 0))
			po->o = &opts[k];
	}
	if (!po->o)
		return fail(err, errlen, "unknown option '%.*s' (see --help)", (int)nlen, a);
	if (!po->o->has_arg) {
		if (eq)
			return fail(err, errlen, "option '%s' takes no value", po->o->name);
		(*i)++;
		return 0;
	}
	if (eq) {
		po->value = eq + 1;
		(*i)++;
		return 0;
	}
	if (*i + 1 >= argc)
		return fail(err, errlen, "option '%s' needs a value (see --help)", po->o->name);
	po->value = argv[*i + 1];
	*i += 2;
	return 0;
}

static int apply_opt(const struct parsed_opt *po, struct agent_config *c, bool *sinks_reset,
		     char *err, size_t errlen)
{
	const char *v = po->value;
	const char *n = po->o->name;
	uint64_t x;
	int b;

	switch (po->o->id) {
	case O_SINK:
		b = sink_bit(v);
		if (b < 0)
			return fail(
			    err, errlen,
			    "invalid value '%s' for %s (expected stdout, file or controller)", v,
			    n);
		if (!*sinks_reset) {
			c->sinks = 0;
			*sinks_reset = true;
		}
		c->sinks |= (unsigned)b;
		return 0;
	case O_DATA_DIR:
		if (!*v || strlen(v) >= sizeof(c->data_dir) - 64)
			return fail(err, errlen, "invalid value '%s' for %s (expected a directory)",
				    v, n);
		snprintf(c->data_dir, sizeof(c->data_dir), "%s", v);
		return 0;
	case O_NODE_NAME:
	case O_CLUSTER:
	case O_AGENT_ID: {
		char *dst = po->o->id == O_NODE_NAME ? c->node_name
			    : po->o->id == O_CLUSTER ? c->cluster
						     : c->agent_id;
		size_t len = po->o->id == O_AGENT_ID ? sizeof(c->agent_id) : TAPIO_NAME_LEN;
		if (set_name(dst, len, v) < 0)
			return fail(
			    err, errlen,
			    "invalid value '%s' for %s (expected 1..%zu printable characters)", v,
			    n, len - 1);
		if (po->o->id == O_AGENT_ID)
			c->agent_id_generated = false;
		return 0;
	}
	case O_CONFIG:
		return 0; /* loaded before the flags are applied */
	case O_LOG_LEVEL:
		b = log_level_parse(v);
		if (b < 0)
			return fail(
			    err, errlen,
			    "invalid value '%s' for %s (expected debug, info, warn or error)", v,
			    n);
		c->log_level = b;
		return 0;
	case O_STATS_INTERVAL:
		if (parse_uint(v, 0, MAX_STATS_INTERVAL, &x) < 0)
			return fail(err, errlen,
				    "invalid value '%s' for %s (expected seconds 0..%u)", v, n,
				    MAX_STATS_INTERVAL);
		c->stats_interval_s = (uint32_t)x;
		return 0;
	case O_FILE_MAX_BYTES:
		if (parse_uint(v, SINK_FILE_MIN_MAX_BYTES, MAX_FILE_BYTES, &x) < 0)
			return fail(err, errlen,
				    "invalid value '%s' for %s (expected bytes %u..%llu)", v, n,
				    SINK_FILE_MIN_MAX_BYTES, (unsigned long long)MAX_FILE_BYTES);
		c->file_max_bytes = x;
		return 0;
	case O_FILE_MAX_FILES:
		if (parse_uint(v, 2, MAX_FILE_FILES, &x) < 0)
			return fail(err, errlen, "invalid value '%s' for %s (expected 2..%u)", v, n,
				    MAX_FILE_FILES);
		c->file_max_files = (uint32_t)x;
		return 0;
	case O_CONTROLLER:
		if (check_endpoint(v) < 0)
			return fail(err, errlen,
				    "invalid value '%s' for %s (expected HOST:PORT or [v6]:PORT)",
				    v, n);
		snprintf(c->controller, sizeof(c->controller), "%s", v);
		return 0;
	case O_HEARTBEAT_INTERVAL:
		if (parse_uint(v, 1, MAX_HEARTBEAT, &x) < 0)
			return fail(err, errlen,
				    "invalid value '%s' for %s (expected seconds 1..%u)", v, n,
				    MAX_HEARTBEAT);
		c->heartbeat_interval_s = (uint32_t)x;
		return 0;
	case O_SPOOL_DIR:
		if (!*v || strlen(v) >= sizeof(c->spool_dir) - 64)
			return fail(err, errlen, "invalid value '%s' for %s (expected a directory)",
				    v, n);
		snprintf(c->spool_dir, sizeof(c->spool_dir), "%s", v);
		return 0;
	case O_SPOOL_MAX_BYTES:
	case O_QUEUE_MAX_BYTES: {
		bool spool = po->o->id == O_SPOOL_MAX_BYTES;
		uint64_t lo = spool ? AGENT_MIN_SPOOL_BYTES : AGENT_MIN_QUEUE_BYTES;
		uint64_t hi = spool ? MAX_SPOOL_BYTES : MAX_QUEUE_BYTES;
		if (parse_uint(v, lo, hi, &x) < 0)
			return fail(err, errlen,
				    "invalid value '%s' for %s (expected bytes %llu..%llu)", v, n,
				    (unsigned long long)lo, (unsigned long long)hi);
		if (spool)
			c->spool_max_bytes = x;
		else
			c->queue_max_bytes = x;
		return 0;
	}
	case O_TLS_CA:
	case O_TLS_CERT:
	case O_TLS_KEY:
	case O_TLS_SERVER_NAME:
	case O_TOKEN:
	case O_TOKEN_FILE: {
		static const char *const keys[] = {"tls_ca",	      "tls_cert", "tls_key",
						   "tls_server_name", "token",	  "token_file"};
		struct tls_slot sl;

		tls_key_slot(c, keys[po->o->id - O_TLS_CA], &sl);
		if (!*v || strlen(v) >= sl.len)
			return fail(err, errlen, "invalid value for %s (empty or too long)", n);
		snprintf(sl.buf, sl.len, "%s", v);
		return 0;
	}
	case O_HELP:
	case O_VERSION:
		return 0;
	}
	return 0;
}

int agent_config_parse(int argc, char **argv, struct agent_config *c, FILE *out, char *err,
		       size_t errlen)
{
	struct parsed_opt po;
	const char *config = NULL;
	bool sinks_reset = false;
	int i, rc;

	/* Pass 1: syntax, --help/--version, --config. */
	for (i = 1; i < argc;) {
		if ((rc = next_opt(argc, argv, &i, &po, err, errlen)) < 0)
			return rc;
		if (po.o->id == O_HELP) {
			agent_config_usage(out);
			return AGENT_CONFIG_EXIT;
		}
		if (po.o->id == O_VERSION) {
			fprintf(out, "tapio-agent %s\n", TAPIO_VERSION);
			return AGENT_CONFIG_EXIT;
		}
		if (po.o->id == O_CONFIG)
			config = po.value;
	}

	set_defaults(c);
	if (config) {
		if (!*config || strlen(config) >= sizeof(c->config_file))
			return fail(err, errlen, "invalid value '%s' for --config", config);
		snprintf(c->config_file, sizeof(c->config_file), "%s", config);
		if ((rc = agent_config_load_file(config, c, err, errlen)) < 0)
			return rc;
	}

	/* Pass 2: flags override the file. */
	for (i = 1; i < argc;) {
		if ((rc = next_opt(argc, argv, &i, &po, err, errlen)) < 0)
			return rc;
		if ((rc = apply_opt(&po, c, &sinks_reset, err, errlen)) < 0)
			return rc;
	}
	if (c->token_file[0] &&
	    tls_read_token_file(c->token_file, c->token, sizeof(c->token), err, errlen) < 0)
		return -EINVAL;
	if ((c->tls_cert[0] || c->tls_key[0] || c->tls_server_name[0]) && !c->tls_ca[0])
		return fail(err, errlen,
			    "--tls-cert, --tls-key and --tls-server-name need --tls-ca (or "
			    "controller.tls_ca)");
	if (!c->tls_cert[0] != !c->tls_key[0])
		return fail(err, errlen, "--tls-cert and --tls-key go together");
	if ((c->sinks & AGENT_SINK_CONTROLLER) && !c->controller[0])
		return fail(
		    err, errlen,
		    "the controller sink needs --controller HOST:PORT (or controller.address "
		    "in the config file)");
	if ((rc = settings_validate(&c->settings, err, errlen)) < 0)
		return rc;
	c->argc = argc;
	c->argv = argv;
	return AGENT_CONFIG_RUN;
}
