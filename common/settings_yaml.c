/*
 * Observer settings from YAML. Values are type-checked here (with the value's position);
 * ranges and contradictions are checked by settings_validate(), whose message names the key;
 * that key is looked up among the positions recorded while applying, so every error points
 * at a line and column of the file.
 */
#include "settings_yaml.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_LEN	  128
#define MAX_MARKS 64

struct mark {
	char key[KEY_LEN];
	const yaml_node_t *node;
};

struct ctx {
	const char *label;
	yaml_document_t *doc;
	struct tapio_settings *s;
	char *err;
	size_t errlen;
	struct mark marks[MAX_MARKS];
	size_t n_marks;
};

int settings_yaml_error(char *err, size_t errlen, const char *label, const yaml_node_t *node,
			const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!err || !errlen)
		return -EINVAL;
	n = snprintf(err, errlen, "%s:%zu:%zu: ", label, node->start_mark.line + 1,
		     node->start_mark.column + 1);
	if (n < 0 || (size_t)n >= errlen)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static bool is_plain(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static const char *type_word(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? "a plain scalar"
								       : "a quoted string";
	}
}

static int want(const char *label, const yaml_node_t *n, const char *key, const char *what,
		char *err, size_t errlen)
{
	if (n->type == YAML_SCALAR_NODE)
		return settings_yaml_error(err, errlen, label, n, "%s: expected %s, got '%s'", key,
					   what, scalar(n));
	return settings_yaml_error(err, errlen, label, n, "%s: expected %s, got %s", key, what,
				   type_word(n));
}

static int parse_int(const yaml_node_t *n, long long *out)
{
	const char *v;
	char *end;

	if (!is_plain(n))
		return -EINVAL;
	v = scalar(n);
	if (!*v)
		return -EINVAL;
	errno = 0;
	*out = strtoll(v, &end, 10);
	if (errno || *end)
		return -EINVAL;
	return 0;
}

int settings_yaml_uint(const char *label, const yaml_node_t *node, const char *key, uint64_t min,
		       uint64_t max, uint64_t *out, char *err, size_t errlen)
{
	long long v;

	if (parse_int(node, &v) < 0 || v < 0)
		return want(label, node, key, "a non-negative integer", err, errlen);
	if ((uint64_t)v < min || (uint64_t)v > max)
		return settings_yaml_error(err, errlen, label, node,
					   "%s: %lld out of range %llu..%llu", key, v,
					   (unsigned long long)min, (unsigned long long)max);
	*out = (uint64_t)v;
	return 0;
}

int settings_yaml_string(const char *label, const yaml_node_t *node, const char *key, char *out,
			 size_t outlen, char *err, size_t errlen)
{
	if (node->type != YAML_SCALAR_NODE)
		return want(label, node, key, "a string", err, errlen);
	if (node->data.scalar.length >= outlen)
		return settings_yaml_error(err, errlen, label, node,
					   "%s: longer than %zu characters", key, outlen - 1);
	memcpy(out, scalar(node), node->data.scalar.length + 1);
	return 0;
}

static void remember(struct ctx *c, const char *key, const yaml_node_t *node)
{
	if (c->n_marks < MAX_MARKS) {
		snprintf(c->marks[c->n_marks].key, KEY_LEN, "%.100s", key);
		c->marks[c->n_marks].node = node;
		c->n_marks++;
	}
}

enum kind { K_BOOL, K_U32, K_DBL, K_CODES };

struct field {
	const char *section;
	const char *name;
	enum kind kind;
	size_t offset;
};

#define F(sec, name, kind, field)                                       \
	{                                                               \
		sec, name, kind, offsetof(struct tapio_settings, field) \
	}

static const struct field fields[] = {
    F("network", "enabled", K_BOOL, network_enabled),
    F("network", "conn_refused_window_ms", K_U32, conn_refused_window_ms),
    F("network", "conn_refused_min_count", K_U32, conn_refused_min_count),
    F("network", "retransmit_window_ms", K_U32, retransmit_window_ms),
    F("network", "retransmit_burst_threshold", K_U32, retransmit_burst_threshold),
    F("network", "rtt_spike_ratio", K_DBL, rtt_spike_ratio),
    F("network", "rtt_absolute_ms", K_U32, rtt_absolute_ms),
    F("network", "rtt_baseline_samples", K_U32, rtt_baseline_samples),
    F("network", "rtt_baseline_max_ms", K_U32, rtt_baseline_max_ms),
    F("network", "rtt_sample_interval_ms", K_U32, rtt_sample_interval_ms),
    F("container", "enabled", K_BOOL, container_enabled),
    F("container", "ignored_exit_codes", K_CODES, ignored_exit_codes),
    F("storage", "enabled", K_BOOL, storage_enabled),
    F("storage", "warning_ms", K_U32, storage_warning_ms),
    F("storage", "critical_ms", K_U32, storage_critical_ms),
    F("storage", "window_ms", K_U32, storage_window_ms),
    F("node", "enabled", K_BOOL, node_enabled),
    F("node", "pmc_interval_ms", K_U32, pmc_interval_ms),
    F("node", "stall_warning_pct", K_DBL, pmc_stall_warning_pct),
    F("node", "stall_critical_pct", K_DBL, pmc_stall_critical_pct),
    F("node", "ipc_min", K_DBL, pmc_ipc_min),
    F("node", "memory_pressure_pct", K_DBL, memory_pressure_pct),
};

static const char *const sections[] = {"network", "container", "storage", "node"};

const char *settings_yaml_key(size_t i)
{
	static char names[sizeof(fields) / sizeof(fields[0])][KEY_LEN];

	if (i >= sizeof(fields) / sizeof(fields[0]))
		return NULL;
	if (!names[i][0])
		snprintf(names[i], KEY_LEN, "%s.%s", fields[i].section, fields[i].name);
	return names[i];
}

static int apply_codes(struct ctx *c, const char *key, yaml_node_t *v)
{
	int32_t codes[TAPIO_MAX_IGNORED_EXIT_CODES];
	uint32_t n = 0;
	yaml_node_item_t *it;

	if (v->type != YAML_SEQUENCE_NODE)
		return want(c->label, v, key, "a list of integers", c->err, c->errlen);
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(c->doc, *it);
		char ikey[KEY_LEN];
		long long x;

		snprintf(ikey, sizeof(ikey), "%.100s[%u]", key, n);
		if (n == TAPIO_MAX_IGNORED_EXIT_CODES)
			return settings_yaml_error(c->err, c->errlen, c->label, item,
						   "%s: more than %d entries", key,
						   TAPIO_MAX_IGNORED_EXIT_CODES);
		if (parse_int(item, &x) < 0)
			return want(c->label, item, ikey, "an integer", c->err, c->errlen);
		if (x < 0 || x > 255)
			return settings_yaml_error(c->err, c->errlen, c->label, item,
						   "%s: %lld out of range 0..255", ikey, x);
		remember(c, ikey, item);
		codes[n++] = (int32_t)x;
	}
	c->s->n_ignored_exit_codes = n;
	memset(c->s->ignored_exit_codes, 0, sizeof(c->s->ignored_exit_codes));
	memcpy(c->s->ignored_exit_codes, codes, n * sizeof(codes[0]));
	return 0;
}

static int apply_field(struct ctx *c, const struct field *f, const char *key, yaml_node_t *v)
{
	char *dst = (char *)c->s + f->offset;

	remember(c, key, v);
	switch (f->kind) {
	case K_BOOL: {
		bool b;
		if (is_plain(v) && strcmp(scalar(v), "true") == 0)
			b = true;
		else if (is_plain(v) && strcmp(scalar(v), "false") == 0)
			b = false;
		else
			return want(c->label, v, key, "true or false", c->err, c->errlen);
		memcpy(dst, &b, sizeof(b));
		return 0;
	}
	case K_U32: {
		uint64_t x;
		int rc = settings_yaml_uint(c->label, v, key, 0, UINT32_MAX, &x, c->err, c->errlen);
		uint32_t u = (uint32_t)x;
		if (rc < 0)
			return rc;
		memcpy(dst, &u, sizeof(u));
		return 0;
	}
	case K_DBL: {
		char *end;
		double d;
		if (!is_plain(v) || !*scalar(v))
			return want(c->label, v, key, "a number", c->err, c->errlen);
		errno = 0;
		d = strtod(scalar(v), &end);
		if (errno || *end || !isfinite(d))
			return want(c->label, v, key, "a number", c->err, c->errlen);
		memcpy(dst, &d, sizeof(d));
		return 0;
	}
	case K_CODES:
		return apply_codes(c, key, v);
	}
	return -EINVAL;
}

/* Rejects a key seen before in the same mapping. */
static int check_duplicate(struct ctx *c, yaml_node_pair_t *start, yaml_node_pair_t *p,
			   const char *prefix)
{
	yaml_node_t *k = yaml_document_get_node(c->doc, p->key);

	for (yaml_node_pair_t *q = start; q < p; q++) {
		yaml_node_t *qk = yaml_document_get_node(c->doc, q->key);
		if (qk->type == YAML_SCALAR_NODE && strcmp(scalar(qk), scalar(k)) == 0)
			return settings_yaml_error(c->err, c->errlen, c->label, k,
						   "duplicate key '%s%s'", prefix, scalar(k));
	}
	return 0;
}

static int apply_section(struct ctx *c, const char *section, yaml_node_t *m)
{
	yaml_node_pair_t *p;
	char prefix[KEY_LEN];
	int rc;

	snprintf(prefix, sizeof(prefix), "%s.", section);
	if (m->type == YAML_SCALAR_NODE && is_plain(m) && !*scalar(m))
		return 0; /* "storage:" with nothing under it */
	if (m->type != YAML_MAPPING_NODE)
		return want(c->label, m, section, "a mapping", c->err, c->errlen);
	for (p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
		const struct field *f = NULL;
		char key[KEY_LEN];

		if (k->type != YAML_SCALAR_NODE)
			return settings_yaml_error(c->err, c->errlen, c->label, k,
						   "%s: keys must be plain names", section);
		snprintf(key, sizeof(key), "%.20s.%.90s", section, scalar(k));
		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
			if (strcmp(fields[i].section, section) == 0 &&
			    strcmp(fields[i].name, scalar(k)) == 0)
				f = &fields[i];
		if (!f)
			return settings_yaml_error(c->err, c->errlen, c->label, k,
						   "unknown key '%s'", key);
		if ((rc = check_duplicate(c, m->data.mapping.pairs.start, p, prefix)) < 0)
			return rc;
		if ((rc = apply_field(c, f, key, v)) < 0)
			return rc;
	}
	return 0;
}

/*
 * Points a settings_validate() message at the file: the key it starts with, else any key
 * recorded from this file that the message mentions, else the mapping itself.
 */
static int locate_validate_error(struct ctx *c, const yaml_node_t *mapping, const char *msg)
{
	const struct mark *best = NULL;
	size_t best_pos = (size_t)-1;

	for (size_t i = 0; i < c->n_marks; i++) {
		const char *hit = msg;
		size_t kl = strlen(c->marks[i].key);
		while ((hit = strstr(hit, c->marks[i].key)) != NULL) {
			char after = hit[kl];
			if (after != '[' && after != '_' && !(after >= 'a' && after <= 'z'))
				break;
			hit += kl;
		}
		if (hit && (size_t)(hit - msg) < best_pos) {
			best_pos = (size_t)(hit - msg);
			best = &c->marks[i];
		}
	}
	return settings_yaml_error(c->err, c->errlen, c->label, best ? best->node : mapping, "%s",
				   msg);
}

int settings_yaml_apply_ex(const char *file_label, yaml_document_t *doc, yaml_node_t *mapping,
			   const char *const *extra_keys, struct tapio_settings *s, char *err,
			   size_t errlen)
{
	struct ctx *c = calloc(1, sizeof(*c));
	char msg[256];
	yaml_node_pair_t *p;
	int rc = 0;

	if (!c)
		return -ENOMEM;
	c->label = file_label;
	c->doc = doc;
	c->s = s;
	c->err = err;
	c->errlen = errlen;
	if (mapping->type != YAML_MAPPING_NODE) {
		rc = settings_yaml_error(err, errlen, file_label, mapping,
					 "expected a mapping of sections, got %s",
					 type_word(mapping));
		goto out;
	}
	for (p = mapping->data.mapping.pairs.start; p < mapping->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		yaml_node_t *v = yaml_document_get_node(doc, p->value);
		const char *section = NULL;
		bool extra = false;

		if (k->type != YAML_SCALAR_NODE) {
			rc = settings_yaml_error(err, errlen, file_label, k,
						 "keys must be plain names");
			goto out;
		}
		for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
			if (strcmp(sections[i], scalar(k)) == 0)
				section = sections[i];
		for (const char *const *e = extra_keys; e && *e; e++)
			if (strcmp(*e, scalar(k)) == 0)
				extra = true;
		if ((rc = check_duplicate(c, mapping->data.mapping.pairs.start, p, "")) < 0)
			goto out;
		if (extra)
			continue;
		if (!section) {
			rc = settings_yaml_error(err, errlen, file_label, k, "unknown key '%s'",
						 scalar(k));
			goto out;
		}
		if ((rc = apply_section(c, section, v)) < 0)
			goto out;
	}
	if (settings_validate(s, msg, sizeof(msg)) < 0)
		rc = locate_validate_error(c, mapping, msg);
out:
	free(c);
	return rc;
}

int settings_yaml_apply(const char *file_label, yaml_document_t *doc, yaml_node_t *mapping,
			struct tapio_settings *s, char *err, size_t errlen)
{
	return settings_yaml_apply_ex(file_label, doc, mapping, NULL, s, err, errlen);
}

int settings_yaml_load_document(const char *path, yaml_document_t *doc, char *err, size_t errlen)
{
	yaml_parser_t parser;
	FILE *f = fopen(path, "rb");
	int rc = 0;

	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, doc)) {
		snprintf(err, errlen, "%s:%zu:%zu: YAML syntax error: %s", path,
			 parser.problem_mark.line + 1, parser.problem_mark.column + 1,
			 parser.problem ? parser.problem : "unknown");
		rc = -EINVAL;
	}
	yaml_parser_delete(&parser);
	fclose(f);
	return rc;
}

int settings_yaml_load_file(const char *path, struct tapio_settings *s, char *err, size_t errlen)
{
	yaml_document_t doc;
	yaml_node_t *root;
	int rc = settings_yaml_load_document(path, &doc, err, errlen);

	if (rc < 0)
		return rc;
	root = yaml_document_get_root_node(&doc);
	if (root && !(root->type == YAML_SCALAR_NODE && !*scalar(root)))
		rc = settings_yaml_apply(path, &doc, root, s, err, errlen);
	else
		rc = settings_validate(s, err, errlen);
	yaml_document_delete(&doc);
	return rc;
}
