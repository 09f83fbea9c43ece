/* tapio-controller: flag parsing only; the work lives in controller.c and dump.c. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/tls.h"
#include "controller/controller.h"

static const char usage[] =
    "usage: tapio-controller --data-dir DIR [options]\n"
    "       tapio-controller --dump DIR [--json] [--since TIME] [--type TYPE] [--limit N]\n"
    "\n"
    "server options:\n"
    "  --listen HOST:PORT          listen address (default 127.0.0.1:7070; [::1]:7070 for IPv6)\n"
    "  --data-dir DIR              store directory (created if missing)\n"
    "  --http HOST:PORT|off        query API address (default 127.0.0.1:7080, docs/api.md)\n"
    "  --fsync MODE                always | interval:MS | never (default always)\n"
    "  --segment-max-bytes N       seal a segment past N bytes (default 64M)\n"
    "  --segment-max-age DUR       seal a segment older than DUR (default 1h)\n"
    "  --retention-bytes N         keep at most N bytes of segments (default 10G)\n"
    "  --retention-age DUR         drop segments whose newest record is older (default 7d)\n"
    "  --page-cache-keep N|all     keep the newest N stored bytes in page cache, drop older\n"
    "                              pages once durable (default 256M)\n"
    "  --direct-io on|off          write segments with O_DIRECT where the file system allows\n"
    "                              it (default on; off: through the page cache)\n"
    "  --max-frame N               largest accepted frame payload (default 4M)\n"
    "  --idle-timeout DUR          close agents silent this long (default 90s)\n"
    "  --hello-timeout DUR         close connections without Hello (default 10s)\n"
    "  --heartbeat-interval DUR    interval announced in Welcome (default 20s)\n"
    "  --max-output-bytes N        unsent output per connection before disconnect (default 256K)\n"
    "  --high-water-bytes N        pause batch readers above N undurable bytes (default 32M)\n"
    "  --token TOKEN               require Hello.token to equal TOKEN\n"
    "  --token-file FILE           the same, read from FILE (keeps it out of ps)\n"
    "  --tls-cert FILE             TLS 1.3 on the ingest listener: certificate chain (PEM)\n"
    "  --tls-key FILE              its private key (PEM, unencrypted)\n"
    "  --tls-client-ca FILE        require agent certificates signed by these CAs (mTLS)\n"
    "  --plaintext                 plaintext ingest on purpose (no warning; docs/security.md)\n"
    "  --http-token TOKEN          query API requires Authorization: Bearer TOKEN (else 401)\n"
    "  --http-token-file FILE      the same, read from FILE\n"
    "  --http-tls-cert FILE        serve the query API over HTTPS with this certificate\n"
    "  --http-tls-key FILE         and this key\n"
    "  --controller-id ID          Welcome.controller_id (default tapio-controller@HOSTNAME)\n"
    "  --stats-interval DUR        periodic stats log line (default 60s)\n"
    "  --log-level LEVEL           debug | info | warn | error (default info)\n"
    "  --profile FILE              evidence profile pushed to every agent (reload: SIGHUP or\n"
    "                              a change of the file); without it agents keep their own\n"
    "  --check-profile FILE        validate FILE, print its summary and exit (0 ok, 1 bad)\n"
    "dump options:\n"
    "  --dump DIR                  print stored occurrences and a summary, start no server\n"
    "  --json                      JSON lines on stdout (summary on stderr)\n"
    "  --since TIME                RFC 3339 time, or a duration back from now (5m, 2h)\n"
    "  --type TYPE                 e.g. kernel.network.connection_refused\n"
    "  --limit N                   print at most N occurrences\n"
    "  --help, --version\n"
    "sizes take k/m/g suffixes (binary); durations ms/s/m/h/d (bare numbers are seconds)\n";

enum {
	OPT_LISTEN = 256,
	OPT_DATA_DIR,
	OPT_FSYNC,
	OPT_SEG_BYTES,
	OPT_CACHE_KEEP,
	OPT_DIRECT_IO,
	OPT_SEG_AGE,
	OPT_RET_BYTES,
	OPT_RET_AGE,
	OPT_MAX_FRAME,
	OPT_IDLE,
	OPT_HELLO,
	OPT_HEARTBEAT,
	OPT_MAX_OUT,
	OPT_HIGH_WATER,
	OPT_TOKEN,
	OPT_CONTROLLER_ID,
	OPT_STATS,
	OPT_LOG_LEVEL,
	OPT_DUMP,
	OPT_JSON,
	OPT_SINCE,
	OPT_TYPE,
	OPT_LIMIT,
	OPT_HELP,
	OPT_VERSION,
	OPT_HTTP,
	OPT_PROFILE,
	OPT_CHECK_PROFILE,
	OPT_TOKEN_FILE,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_TLS_CLIENT_CA,
	OPT_PLAINTEXT,
	OPT_HTTP_TOKEN,
	OPT_HTTP_TOKEN_FILE,
	OPT_HTTP_TLS_CERT,
	OPT_HTTP_TLS_KEY,
};

static const struct option options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"fsync", required_argument, NULL, OPT_FSYNC},
    {"segment-max-bytes", required_argument, NULL, OPT_SEG_BYTES},
    {"page-cache-keep", required_argument, NULL, OPT_CACHE_KEEP},
    {"direct-io", required_argument, NULL, OPT_DIRECT_IO},
    {"segment-max-age", required_argument, NULL, OPT_SEG_AGE},
    {"retention-bytes", required_argument, NULL, OPT_RET_BYTES},
    {"retention-age", required_argument, NULL, OPT_RET_AGE},
    {"max-frame", required_argument, NULL, OPT_MAX_FRAME},
    {"idle-timeout", required_argument, NULL, OPT_IDLE},
    {"hello-timeout", required_argument, NULL, OPT_HELLO},
    {"heartbeat-interval", required_argument, NULL, OPT_HEARTBEAT},
    {"max-output-bytes", required_argument, NULL, OPT_MAX_OUT},
    {"high-water-bytes", required_argument, NULL, OPT_HIGH_WATER},
    {"token", required_argument, NULL, OPT_TOKEN},
    {"controller-id", required_argument, NULL, OPT_CONTROLLER_ID},
    {"stats-interval", required_argument, NULL, OPT_STATS},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"dump", required_argument, NULL, OPT_DUMP},
    {"json", no_argument, NULL, OPT_JSON},
    {"since", required_argument, NULL, OPT_SINCE},
    {"type", required_argument, NULL, OPT_TYPE},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"help", no_argument, NULL, OPT_HELP},
    {"version", no_argument, NULL, OPT_VERSION},
    {"http", required_argument, NULL, OPT_HTTP},
    {"profile", required_argument, NULL, OPT_PROFILE},
    {"check-profile", required_argument, NULL, OPT_CHECK_PROFILE},
    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"tls-client-ca", required_argument, NULL, OPT_TLS_CLIENT_CA},
    {"plaintext", no_argument, NULL, OPT_PLAINTEXT},
    {"http-token", required_argument, NULL, OPT_HTTP_TOKEN},
    {"http-token-file", required_argument, NULL, OPT_HTTP_TOKEN_FILE},
    {"http-tls-cert", required_argument, NULL, OPT_HTTP_TLS_CERT},
    {"http-tls-key", required_argument, NULL, OPT_HTTP_TLS_KEY},
    {NULL, 0, NULL, 0},
};

static int bad(const char *flag, const char *value, const char *why)
{
	fprintf(stderr, "tapio-controller: invalid %s '%s': %s (see --help)\n", flag, value, why);
	return 2;
}

/* "64", "64k", "4M", "10GiB" → bytes. Returns 0 or -EINVAL. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mult = 1;

	errno = 0;
	if (!s[0] || s[0] == '-')
		return -EINVAL;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		mult = 1ull << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mult = 1ull << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mult = 1ull << 30;
		end++;
		break;
	case 't':
	case 'T':
		mult = 1ull << 40;
		end++;
		break;
	}
	if (mult > 1 && strcmp(end, "iB") == 0)
		end += 2;
	if (strcmp(end, "B") == 0)
		end++;
	if (*end || v > UINT64_MAX / mult)
		return -EINVAL;
	*out = v * mult;
	return 0;
}

/* "250ms", "90", "90s", "5m", "2h", "7d" → milliseconds. Returns 0 or -EINVAL. */
static int parse_duration_ms(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mult;

	errno = 0;
	if (!s[0] || s[0] == '-')
		return -EINVAL;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (!*end || strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "m") == 0)
		mult = 60ull * 1000;
	else if (strcmp(end, "h") == 0)
		mult = 3600ull * 1000;
	else if (strcmp(end, "d") == 0)
		mult = 86400ull * 1000;
	else
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -EINVAL;
	*out = v * mult;
	return 0;
}

/* "HOST:PORT" or "[V6]:PORT" → host (static copy) and port. Returns 0 or -EINVAL. */
static int parse_listen(const char *s, const char **host, int *port)
{
	static char buf[256];
	const char *colon;
	char *end;
	long p;

	if (strlen(s) >= sizeof(buf))
		return -EINVAL;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return -EINVAL;
		memcpy(buf, s + 1, (size_t)(close - s - 1));
		buf[close - s - 1] = '\0';
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || colon == s)
			return -EINVAL;
		memcpy(buf, s, (size_t)(colon - s));
		buf[colon - s] = '\0';
	}
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || p < 0 || p > 65535)
		return -EINVAL;
	*host = buf;
	*port = (int)p;
	return 0;
}

static int parse_fsync(const char *s, struct store_options *so)
{
	uint64_t ms;

	if (strcmp(s, "always") == 0) {
		so->fsync = STORE_FSYNC_ALWAYS;
	} else if (strcmp(s, "never") == 0) {
		so->fsync = STORE_FSYNC_NEVER;
	} else if (strncmp(s, "interval:", 9) == 0) {
		if (parse_duration_ms(s + 9, &ms) < 0 || ms == 0 || ms > UINT32_MAX)
			return -EINVAL;
		/* a bare number after interval: means milliseconds */
		if (strspn(s + 9, "0123456789") == strlen(s + 9))
			ms /= 1000;
		if (ms == 0)
			return -EINVAL;
		so->fsync = STORE_FSYNC_INTERVAL;
		so->fsync_interval_ms = (uint32_t)ms;
	} else {
		return -EINVAL;
	}
	return 0;
}

static int parse_since(const char *s, uint64_t *ns)
{
	uint64_t ms, now = clock_wall_ns();

	if (clock_parse_rfc3339(s, ns) == 0)
		return 0;
	if (parse_duration_ms(s, &ms) < 0 || ms * 1000000ull > now)
		return -EINVAL;
	*ns = now - ms * 1000000ull;
	return 0;
}

static int to_u32_ms(uint64_t ms, uint32_t *out)
{
	if (ms == 0 || ms > UINT32_MAX)
		return -EINVAL;
	*out = (uint32_t)ms;
	return 0;
}

int main(int argc, char **argv)
{
	struct controller_options o;
	struct dump_options d = {.type = -1};
	static char default_id[300];
	static char token_buf[TLS_TOKEN_MAX + 1], http_token_buf[TLS_TOKEN_MAX + 1];
	char host[256] = "";
	uint64_t v;
	int c, lvl;

	controller_options_defaults(&o);
	gethostname(host, sizeof(host) - 1);
	snprintf(default_id, sizeof(default_id), "tapio-controller@%s", host[0] ? host : "unknown");
	o.ingest.controller_id = default_id;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (c) {
		case OPT_LISTEN:
			if (parse_listen(optarg, &o.ingest.host, &o.ingest.port) < 0)
				return bad("--listen", optarg, "want HOST:PORT");
			break;
		case OPT_DATA_DIR:
			o.store.dir = optarg;
			break;
		case OPT_FSYNC:
			if (parse_fsync(optarg, &o.store) < 0)
				return bad("--fsync", optarg, "want always, interval:MS or never");
			break;
		case OPT_SEG_BYTES:
			if (parse_size(optarg, &o.store.segment_max_bytes) < 0 ||
			    o.store.segment_max_bytes < 4096)
				return bad("--segment-max-bytes", optarg, "want a size >= 4k");
			break;
		case OPT_CACHE_KEEP:
			if (!strcmp(optarg, "all"))
				o.store.cache_keep_bytes = STORE_CACHE_KEEP_ALL;
			else if (parse_size(optarg, &o.store.cache_keep_bytes) < 0 ||
				 o.store.cache_keep_bytes < (1u << 20))
				return bad("--page-cache-keep", optarg,
					   "want a size >= 1M, or all");
			break;
		case OPT_DIRECT_IO:
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				return bad("--direct-io", optarg, "want on or off");
			o.store.buffered_writes = !strcmp(optarg, "off");
			break;
		case OPT_SEG_AGE:
			if (parse_duration_ms(optarg, &v) < 0 || v < 1000)
				return bad("--segment-max-age", optarg, "want a duration >= 1s");
			o.store.segment_max_age_s = v / 1000;
			break;
		case OPT_RET_BYTES:
			if (parse_size(optarg, &o.store.retention_bytes) < 0 ||
			    o.store.retention_bytes == 0)
				return bad("--retention-bytes", optarg, "want a size > 0");
			break;
		case OPT_RET_AGE:
			if (parse_duration_ms(optarg, &v) < 0 || v < 1000)
				return bad("--retention-age", optarg, "want a duration >= 1s");
			o.store.retention_age_s = v / 1000;
			break;
		case OPT_MAX_FRAME:
			if (parse_size(optarg, &v) < 0 || v < 1024 || v > CODEC_MAX_FRAME_LIMIT)
				return bad("--max-frame", optarg, "want a size in [1k, 2G)");
			o.ingest.max_frame = (uint32_t)v;
			break;
		case OPT_IDLE:
			if (parse_duration_ms(optarg, &v) < 0 ||
			    to_u32_ms(v, &o.ingest.idle_timeout_ms))
				return bad("--idle-timeout", optarg, "want a duration > 0");
			break;
		case OPT_HELLO:
			if (parse_duration_ms(optarg, &v) < 0 ||
			    to_u32_ms(v, &o.ingest.hello_timeout_ms))
				return bad("--hello-timeout", optarg, "want a duration > 0");
			break;
		case OPT_HEARTBEAT:
			if (parse_duration_ms(optarg, &v) < 0 ||
			    to_u32_ms(v, &o.ingest.heartbeat_interval_ms))
				return bad("--heartbeat-interval", optarg, "want a duration > 0");
			break;
		case OPT_MAX_OUT:
			if (parse_size(optarg, &v) < 0 || v < 256 || v > SIZE_MAX)
				return bad("--max-output-bytes", optarg, "want a size >= 256");
			o.ingest.max_output_bytes = (size_t)v;
			break;
		case OPT_HIGH_WATER:
			if (parse_size(optarg, &v) < 0 || v < 4096)
				return bad("--high-water-bytes", optarg, "want a size >= 4k");
			o.ingest.high_water_bytes = v;
			o.ingest.low_water_bytes = v / 4;
			break;
		case OPT_TOKEN:
			o.ingest.token = optarg;
			break;
		case OPT_TOKEN_FILE: {
			char err[600];

			if (tls_read_token_file(optarg, token_buf, sizeof(token_buf), err,
						sizeof(err)) < 0) {
				fprintf(stderr, "tapio-controller: --token-file: %s\n", err);
				return 2;
			}
			o.ingest.token = token_buf;
			break;
		}
		case OPT_TLS_CERT:
			o.tls.cert_file = optarg;
			break;
		case OPT_TLS_KEY:
			o.tls.key_file = optarg;
			break;
		case OPT_TLS_CLIENT_CA:
			o.tls.client_ca_file = optarg;
			break;
		case OPT_PLAINTEXT:
			o.plaintext = true;
			break;
		case OPT_HTTP_TOKEN:
			o.http.token = optarg;
			break;
		case OPT_HTTP_TOKEN_FILE: {
			char err[600];

			if (tls_read_token_file(optarg, http_token_buf, sizeof(http_token_buf), err,
						sizeof(err)) < 0) {
				fprintf(stderr, "tapio-controller: --http-token-file: %s\n", err);
				return 2;
			}
			o.http.token = http_token_buf;
			break;
		}
		case OPT_HTTP_TLS_CERT:
			o.http.tls_cert = optarg;
			break;
		case OPT_HTTP_TLS_KEY:
			o.http.tls_key = optarg;
			break;
		case OPT_CONTROLLER_ID:
			if (!optarg[0])
				return bad("--controller-id", optarg, "must not be empty");
			o.ingest.controller_id = optarg;
			break;
		case OPT_STATS:
			if (parse_duration_ms(optarg, &v) < 0 || to_u32_ms(v, &o.stats_interval_ms))
				return bad("--stats-interval", optarg, "want a duration > 0");
			break;
		case OPT_LOG_LEVEL:
			lvl = log_level_parse(optarg);
			if (lvl < 0)
				return bad("--log-level", optarg,
					   "want debug, info, warn or error");
			log_set_level((enum log_level)lvl);
			break;
		case OPT_DUMP:
			d.dir = optarg;
			break;
		case OPT_JSON:
			d.json = true;
			break;
		case OPT_SINCE:
			if (parse_since(optarg, &d.since_ns) < 0)
				return bad("--since", optarg, "want RFC 3339 or a duration");
			break;
		case OPT_TYPE:
			d.type = tapio_occ_type_parse(optarg);
			if (d.type < 0)
				return bad("--type", optarg, "unknown occurrence type");
			break;
		case OPT_LIMIT:
			if (parse_size(optarg, &v) < 0 || v > SIZE_MAX)
				return bad("--limit", optarg, "want a count");
			d.limit = (size_t)v;
			break;
		case OPT_HTTP: {
			static char http_host[256]; /* parse_listen's buffer is shared */

			if (strcmp(optarg, "off") == 0) {
				o.http.disabled = true;
				break;
			}
			if (parse_listen(optarg, &o.http.host, &o.http.port) < 0)
				return bad("--http", optarg, "want HOST:PORT or off");
			snprintf(http_host, sizeof(http_host), "%s", o.http.host);
			o.http.host = http_host;
			o.http.required = true;
			o.http.disabled = false; /* the last --http wins */
			break;
		}
		case OPT_PROFILE:
			o.profile_path = optarg;
			break;
		case OPT_CHECK_PROFILE:
			return config_dist_check_file(optarg, stdout, stderr);
		case OPT_HELP:
			fputs(usage, stdout);
			return 0;
		case OPT_VERSION:
			printf("tapio-controller %s\n", TAPIO_VERSION);
			return 0;
		default:
			if (optopt && optopt < 256)
				fprintf(stderr,
					"tapio-controller: unknown flag '-%c' (see --help)\n",
					optopt);
			else
				fprintf(stderr,
					"tapio-controller: unknown flag or missing value in '%s' "
					"(see --help)\n",
					argv[optind - 1]);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tapio-controller: unexpected argument '%s' (see --help)\n",
			argv[optind]);
		return 2;
	}
	if (d.dir)
		return controller_dump(&d);
	if (!o.store.dir) {
		fprintf(stderr, "tapio-controller: --data-dir DIR is required (see --help)\n");
		return 2;
	}
	if (o.profile_path) {
		struct profile *p = NULL;
		char err[600] = "";
		int r = profile_load_file(o.profile_path, &p, err, sizeof(err));

		profile_free(p);
		if (r < 0) {
			fprintf(stderr, "tapio-controller: --profile: %s\n",
				err[0] ? err : strerror(-r));
			return 2;
		}
	}
	if (!o.tls.cert_file != !o.tls.key_file || (o.tls.client_ca_file && !o.tls.cert_file)) {
		fprintf(stderr, "tapio-controller: --tls-cert and --tls-key go together "
				"(and --tls-client-ca needs both; see --help)\n");
		return 2;
	}
	if (!o.http.tls_cert != !o.http.tls_key) {
		fprintf(stderr,
			"tapio-controller: --http-tls-cert and --http-tls-key go together\n");
		return 2;
	}
	if (o.plaintext && o.tls.cert_file) {
		fprintf(stderr, "tapio-controller: --plaintext contradicts --tls-cert\n");
		return 2;
	}
	if ((uint64_t)o.ingest.idle_timeout_ms <= 3ull * o.ingest.heartbeat_interval_ms) {
		fprintf(stderr,
			"tapio-controller: --idle-timeout (%u ms) must exceed 3 heartbeat "
			"intervals (%u ms each)\n",
			o.ingest.idle_timeout_ms, o.ingest.heartbeat_interval_ms);
		return 2;
	}
	return controller_run(&o);
}
