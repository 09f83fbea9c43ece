/*
 * Evidence profiles: YAML → validated defaults + ordered overrides, resolution per agent,
 * content hash. Observer sections are parsed by settings_yaml (one schema for the agent's
 * local file and for profiles); its messages name keys as "storage.warning_ms", so this file
 * re-prefixes them with where the section sits ("overrides[1].storage.warning_ms").
 *
 * Contradictions: every constraint settings_validate() checks between settings involves at
 * most two keys, and each key's resolved value comes from one place (defaults or the last
 * matching override that sets it). So if any set of overrides that can match one agent
 * resolves to invalid settings, one override or one ordered pair of them already does:
 * checking each override on top of defaults and each compatible pair proves every
 * combination. Pairs are skipped only when no agent can match both (a label required with
 * two different values, or two node globs that provably cannot match the same name).
 */
#include "profile.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "common/settings_yaml.h"

struct label_pair {
	char *key;
	char *value;
};

struct override {
	char *node;		   /* shell glob, NULL = any node */
	struct label_pair *labels; /* sorted by key */
	size_t n_labels;
	uint64_t set;		      /* bit i = config_hash_field(i) is set by this override */
	struct tapio_settings values; /* defaults + this override; only `set` fields are used */
};

struct profile {
	char name[PROFILE_MAX_STRING + 1];
	struct tapio_settings defaults;
	struct override *ov;
	size_t n_ov;	 /* parsed entries */
	size_t n_ov_cap; /* allocated (zeroed) entries, freed even when parsing stopped early */
	char content_hash[CONFIG_HASH_LEN];
};

_Static_assert(CONFIG_HASH_SETTINGS_BYTES > 0, "encoding size");

struct loader {
	const char *label;
	yaml_document_t *doc;
	char *err;
	size_t errlen;
	struct profile *p;
	yaml_node_t **ov_nodes;
	uint64_t defaults_set; /* keys spelled out under defaults: (for messages) */
};

static const char *const sections[] = {"network", "container", "storage", "node"};
static const char *const match_key[] = {"match", NULL};

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static bool is_empty(const yaml_node_t *n)
{
	return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	       !*scalar(n);
}

static const char *type_word(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a scalar";
	}
}

static bool is_section(const char *s, size_t *len)
{
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
		size_t l = strlen(sections[i]);
		if (strncmp(s, sections[i], l) == 0 &&
		    (s[l] == '.' || s[l] == ':' || s[l] == '[')) {
			*len = l;
			return true;
		}
	}
	return false;
}

/* Start of the message in "label:line:col: message", or NULL. */
static char *message_start(char *err, const char *label)
{
	size_t l = strlen(label);
	char *p = err;

	if (strncmp(p, label, l) != 0)
		return NULL;
	p += l;
	for (int part = 0; part < 2; part++) {
		if (*p++ != ':' || *p < '0' || *p > '9')
			return NULL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	return strncmp(p, ": ", 2) == 0 ? p + 2 : NULL;
}

/* Where a settings_yaml message's keys come from: a section prefix and the keys it sets. */
struct source {
	const char *prefix; /* "defaults", "overrides[3]" */
	uint64_t set;	    /* bit i = config_hash_field(i) */
};

/* Index of the setting named at msg (followed by a non-name character), or -1. */
static int field_at(const char *msg)
{
	for (size_t f = 0; f < config_hash_field_count(); f++) {
		const char *key = config_hash_field(f)->key;
		size_t l = strlen(key);
		char after = msg[l];

		if (strncmp(msg, key, l) == 0 && !((after >= 'a' && after <= 'z') ||
						   (after >= '0' && after <= '9') || after == '_'))
			return (int)f;
	}
	return -1;
}

/*
 * Rewrites a settings_yaml message so each key says where it was set: "storage.warning_ms"
 * becomes "overrides[1].storage.warning_ms" when src[0] (the mapping being applied) sets it,
 * else the first other source that does; keys nobody set are built-in defaults and stay as
 * they are. A message naming no such key gets src[0]'s prefix on its leading key, on the key
 * inside "key '…'", or in front ("defaults: expected …"). suffix (may be NULL) is appended.
 * Returns -EINVAL.
 */
static int relabel(struct loader *ld, const struct source *src, size_t n_src, const char *suffix)
{
	char *msg = message_start(ld->err, ld->label);
	char tmp[1024];
	size_t o = 0, prefixed = 0;
	const char *q;

	if (!msg)
		return -EINVAL;
	for (const char *m = msg; *m && o < sizeof(tmp) - 80; m++) {
		int f =
		    (m == msg || m[-1] == ' ' || m[-1] == '\'' || m[-1] == '(') ? field_at(m) : -1;
		for (size_t i = 0; f >= 0 && i < n_src; i++) {
			if (!(src[i].set & (1ull << f)))
				continue;
			o += (size_t)snprintf(tmp + o, sizeof(tmp) - o, "%.40s.", src[i].prefix);
			prefixed++;
			break;
		}
		tmp[o++] = *m;
	}
	tmp[o] = 0;
	if (!prefixed) {
		size_t l;
		if (is_section(msg, &l))
			snprintf(tmp, sizeof(tmp), "%.64s.%.900s", src[0].prefix, msg);
		else if ((q = strstr(msg, "key '")) != NULL)
			snprintf(tmp, sizeof(tmp), "%.*s%.64s.%.800s", (int)(q + 5 - msg), msg,
				 src[0].prefix, q + 5);
		else
			snprintf(tmp, sizeof(tmp), "%.64s: %.900s", src[0].prefix, msg);
	}
	snprintf(msg, ld->errlen - (size_t)(msg - ld->err), "%s%s", tmp, suffix ? suffix : "");
	return -EINVAL;
}

/* Rejects a key that is not a scalar, or one seen earlier in the same mapping. */
static int check_key(struct loader *ld, const yaml_node_t *m, const yaml_node_pair_t *p,
		     const char *prefix)
{
	yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);

	if (k->type != YAML_SCALAR_NODE)
		return settings_yaml_error(ld->err, ld->errlen, ld->label, k,
					   "%s%skeys must be plain names", prefix,
					   *prefix ? ": " : "");
	for (const yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
		yaml_node_t *qk = yaml_document_get_node(ld->doc, q->key);
		if (qk->type == YAML_SCALAR_NODE && strcmp(scalar(qk), scalar(k)) == 0)
			return settings_yaml_error(ld->err, ld->errlen, ld->label, k,
						   "duplicate key '%s%s%s'", prefix,
						   *prefix ? "." : "", scalar(k));
	}
	return 0;
}

static int dup_string(struct loader *ld, const yaml_node_t *v, const char *key, char **out)
{
	char buf[PROFILE_MAX_STRING + 1];
	int rc = settings_yaml_string(ld->label, v, key, buf, sizeof(buf), ld->err, ld->errlen);

	if (rc < 0)
		return rc;
	if (!buf[0])
		return settings_yaml_error(ld->err, ld->errlen, ld->label, v, "%s: empty", key);
	if (!(*out = strdup(buf)))
		return -ENOMEM;
	return 0;
}

static int cmp_label(const void *a, const void *b)
{
	return strcmp(((const struct label_pair *)a)->key, ((const struct label_pair *)b)->key);
}

static int parse_labels(struct loader *ld, const char *prefix, yaml_node_t *m, struct override *ov)
{
	char key[300];
	size_t n;
	int rc;

	snprintf(key, sizeof(key), "%.200s.labels", prefix);
	if (m->type != YAML_MAPPING_NODE)
		return settings_yaml_error(ld->err, ld->errlen, ld->label, m,
					   "%s: expected a mapping of label: value, got %s", key,
					   type_word(m));
	n = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
	if (n == 0)
		return settings_yaml_error(ld->err, ld->errlen, ld->label, m,
					   "%s: no labels (leave labels out instead)", key);
	if (n > PROFILE_MAX_LABELS)
		return settings_yaml_error(ld->err, ld->errlen, ld->label, m,
					   "%s: more than %d labels", key, PROFILE_MAX_LABELS);
	if (!(ov->labels = calloc(n, sizeof(*ov->labels))))
		return -ENOMEM;
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
		struct label_pair *lp = &ov->labels[ov->n_labels];
		char vkey[600];

		if ((rc = check_key(ld, m, p, key)) < 0)
			return rc;
		snprintf(vkey, sizeof(vkey), "%.300s.%.280s", key, scalar(k));
		ov->n_labels++;
		if ((rc = dup_string(ld, k, vkey, &lp->key)) < 0 ||
		    (rc = dup_string(ld, v, vkey, &lp->value)) < 0)
			return rc;
	}
	qsort(ov->labels, ov->n_labels, sizeof(*ov->labels), cmp_label);
	return 0;
}

static int parse_match(struct loader *ld, const char *prefix, yaml_node_t *m, struct override *ov)
{
	char key[300];
	int rc;

	snprintf(key, sizeof(key), "%.200s.match", prefix);
	if (is_empty(m) || (m->type == YAML_MAPPING_NODE &&
			    m->data.mapping.pairs.top == m->data.mapping.pairs.start))
		return settings_yaml_error(ld->err, ld->errlen, ld->label, m,
					   "%s: empty match (settings for every agent belong in "
					   "defaults)",
					   key);
	if (m->type != YAML_MAPPING_NODE)
		return settings_yaml_error(ld->err, ld->errlen, ld->label, m,
					   "%s: expected a mapping with node and/or labels, got %s",
					   key, type_word(m));
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);
		char sub[320];

		if ((rc = check_key(ld, m, p, key)) < 0)
			return rc;
		snprintf(sub, sizeof(sub), "%.300s.%.16s", key, scalar(k));
		if (strcmp(scalar(k), "node") == 0) {
			if (v->type != YAML_SCALAR_NODE)
				return settings_yaml_error(ld->err, ld->errlen, ld->label, v,
							   "%s: expected a string (a shell glob), "
							   "got %s",
							   sub, type_word(v));
			if ((rc = dup_string(ld, v, sub, &ov->node)) < 0)
				return rc;
		} else if (strcmp(scalar(k), "labels") == 0) {
			if ((rc = parse_labels(ld, key, v, ov)) < 0)
				return rc;
		} else {
			return settings_yaml_error(ld->err, ld->errlen, ld->label, k,
						   "unknown key '%s.%.200s'", key, scalar(k));
		}
	}
	return 0;
}

/* The observer keys that the sections in mapping m spell out ("match" is skipped). */
static uint64_t keys_set(struct loader *ld, const yaml_node_t *m)
{
	uint64_t set = 0;

	if (m->type != YAML_MAPPING_NODE)
		return 0;
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
		yaml_node_t *v = yaml_document_get_node(ld->doc, p->value);

		if (k->type != YAML_SCALAR_NODE || v->type != YAML_MAPPING_NODE)
			continue;
		for (yaml_node_pair_t *q = v->data.mapping.pairs.start;
		     q < v->data.mapping.pairs.top; q++) {
			yaml_node_t *fk = yaml_document_get_node(ld->doc, q->key);
			char name[300];
			int idx;

			if (fk->type != YAML_SCALAR_NODE)
				continue;
			snprintf(name, sizeof(name), "%.40s.%.200s", scalar(k), scalar(fk));
			idx = config_hash_field_index(name);
			if (idx >= 0)
				set |= 1ull << idx;
		}
	}
	return set;
}

static int parse_override(struct loader *ld, size_t i, yaml_node_t *item)
{
	struct override *ov = &ld->p->ov[i];
	yaml_node_t *match = NULL;
	char prefix[32];
	int rc;

	snprintf(prefix, sizeof(prefix), "overrides[%zu]", i);
	if (item->type != YAML_MAPPING_NODE)
		return settings_yaml_error(ld->err, ld->errlen, ld->label, item,
					   "%s: expected a mapping with match and observer "
					   "sections, got %s",
					   prefix, type_word(item));
	ov->values = ld->p->defaults;
	ov->set = keys_set(ld, item);
	rc = settings_yaml_apply_ex(ld->label, ld->doc, item, match_key, &ov->values, ld->err,
				    ld->errlen);
	if (rc == -EINVAL) {
		struct source src[] = {{prefix, ov->set}, {"defaults", ld->defaults_set}};
		return relabel(ld, src, 2, NULL);
	}
	if (rc < 0)
		return rc;
	for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top;
	     p++)
		if (strcmp(scalar(yaml_document_get_node(ld->doc, p->key)), "match") == 0)
			match = yaml_document_get_node(ld->doc, p->value);
	if (!match)
		return settings_yaml_error(ld->err, ld->errlen, ld->label, item,
					   "%s: missing required key 'match' (settings for every "
					   "agent belong in defaults)",
					   prefix);
	if ((rc = parse_match(ld, prefix, match, ov)) < 0)
		return rc;
	ld->p->n_ov = i + 1;
	return 0;
}

static bool is_literal(const char *glob)
{
	return strpbrk(glob, "*?[\\") == NULL;
}

/* False only when no agent can match both overrides. */
static bool compatible(const struct override *a, const struct override *b)
{
	for (size_t i = 0; i < a->n_labels; i++)
		for (size_t j = 0; j < b->n_labels; j++)
			if (strcmp(a->labels[i].key, b->labels[j].key) == 0 &&
			    strcmp(a->labels[i].value, b->labels[j].value) != 0)
				return false;
	if (a->node && b->node) {
		bool la = is_literal(a->node), lb = is_literal(b->node);
		if (la && lb)
			return strcmp(a->node, b->node) == 0;
		if (la)
			return fnmatch(b->node, a->node, 0) == 0;
		if (lb)
			return fnmatch(a->node, b->node, 0) == 0;
	}
	return true;
}

static void apply_override(struct tapio_settings *s, const struct override *ov)
{
	for (size_t f = 0; f < config_hash_field_count(); f++)
		if (ov->set & (1ull << f))
			config_hash_field_copy(f, s, &ov->values);
}

static int check_pairs(struct loader *ld)
{
	const struct profile *p = ld->p;

	for (size_t j = 1; j < p->n_ov; j++) {
		for (size_t i = 0; i < j; i++) {
			struct tapio_settings s = p->defaults;
			char prefix[32], prefix_i[32], suffix[96];
			int rc;

			if (!compatible(&p->ov[i], &p->ov[j]))
				continue;
			apply_override(&s, &p->ov[i]);
			rc = settings_yaml_apply_ex(ld->label, ld->doc, ld->ov_nodes[j], match_key,
						    &s, ld->err, ld->errlen);
			if (rc == -EINVAL) {
				struct source src[] = {{prefix, p->ov[j].set},
						       {prefix_i, p->ov[i].set},
						       {"defaults", ld->defaults_set}};
				snprintf(prefix, sizeof(prefix), "overrides[%zu]", j);
				snprintf(prefix_i, sizeof(prefix_i), "overrides[%zu]", i);
				snprintf(suffix, sizeof(suffix),
					 " (overrides[%zu] and overrides[%zu] can match the same "
					 "agent)",
					 i, j);
				return relabel(ld, src, 3, suffix);
			}
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

struct buf {
	uint8_t *data;
	size_t len, cap;
	bool oom;
};

static void put(struct buf *b, const void *src, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1024;
		uint8_t *d;
		while (cap < b->len + n)
			cap *= 2;
		if (!(d = realloc(b->data, cap))) {
			b->oom = true;
			return;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, src, n);
	b->len += n;
}

static void put_u64(struct buf *b, uint64_t v)
{
	uint8_t le[8];

	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(v >> (8 * i));
	put(b, le, sizeof(le));
}

static void put_str(struct buf *b, const char *s)
{
	put_u64(b, s ? strlen(s) : UINT64_MAX);
	if (s)
		put(b, s, strlen(s));
}

static void put_settings(struct buf *b, const struct tapio_settings *s)
{
	uint8_t enc[CONFIG_HASH_SETTINGS_BYTES];

	config_hash_encode(s, enc);
	put(b, enc, sizeof(enc));
}

/*
 * Canonical profile encoding: magic, version, defaults (resolved values), override count,
 * then per override its node glob (or none), labels sorted by key, the set-key bitmap, and
 * its values with every key it does not set taken from defaults (a function of effective
 * content only).
 */
static int content_hash(struct profile *p)
{
	static const uint8_t magic[8] = {'T', 'P', 'P', 'R', 'O', 'F', 0, 1};
	struct buf b = {0};
	int rc;

	put(&b, magic, sizeof(magic));
	put_u64(&b, PROFILE_VERSION);
	put_settings(&b, &p->defaults);
	put_u64(&b, p->n_ov);
	for (size_t i = 0; i < p->n_ov; i++) {
		const struct override *ov = &p->ov[i];
		struct tapio_settings v = p->defaults;

		put_str(&b, ov->node);
		put_u64(&b, ov->n_labels);
		for (size_t l = 0; l < ov->n_labels; l++) {
			put_str(&b, ov->labels[l].key);
			put_str(&b, ov->labels[l].value);
		}
		put_u64(&b, ov->set);
		apply_override(&v, ov);
		put_settings(&b, &v);
	}
	rc = b.oom ? -ENOMEM : config_hash_bytes(b.data, b.len, p->content_hash);
	free(b.data);
	return rc;
}

static int load_overrides(struct loader *ld, yaml_node_t *v)
{
	size_t n;
	int rc;

	if (is_empty(v))
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return settings_yaml_error(ld->err, ld->errlen, ld->label, v,
					   "overrides: expected a list, got %s", type_word(v));
	n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
	if (n == 0)
		return 0;
	if (n > PROFILE_MAX_OVERRIDES)
		return settings_yaml_error(ld->err, ld->errlen, ld->label, v,
					   "overrides: more than %d entries",
					   PROFILE_MAX_OVERRIDES);
	ld->p->ov = calloc(n, sizeof(*ld->p->ov));
	ld->ov_nodes = calloc(n, sizeof(*ld->ov_nodes));
	if (!ld->p->ov || !ld->ov_nodes)
		return -ENOMEM;
	ld->p->n_ov_cap = n;
	for (size_t i = 0; i < n; i++) {
		ld->ov_nodes[i] = yaml_document_get_node(ld->doc, v->data.sequence.items.start[i]);
		if ((rc = parse_override(ld, i, ld->ov_nodes[i])) < 0)
			return rc;
	}
	return check_pairs(ld);
}

static int load_root(struct loader *ld, yaml_node_t *root)
{
	static const char *const keys[] = {"version", "name", "defaults", "overrides"};
	yaml_node_t *val[4] = {NULL};
	uint64_t version;
	int rc;

	settings_defaults(&ld->p->defaults);
	if (!root || is_empty(root)) {
		snprintf(ld->err, ld->errlen, "%s:1:1: missing required key 'version'", ld->label);
		return -EINVAL;
	}
	if (root->type != YAML_MAPPING_NODE)
		return settings_yaml_error(ld->err, ld->errlen, ld->label, root,
					   "expected a mapping with version, defaults and "
					   "overrides, got %s",
					   type_word(root));
	for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(ld->doc, p->key);
		size_t i;

		if ((rc = check_key(ld, root, p, "")) < 0)
			return rc;
		for (i = 0; i < 4 && strcmp(keys[i], scalar(k)) != 0; i++)
			;
		if (i == 4)
			return settings_yaml_error(ld->err, ld->errlen, ld->label, k,
						   "unknown key '%.200s'", scalar(k));
		val[i] = yaml_document_get_node(ld->doc, p->value);
	}
	if (!val[0])
		return settings_yaml_error(ld->err, ld->errlen, ld->label, root,
					   "missing required key 'version'");
	if ((rc = settings_yaml_uint(ld->label, val[0], "version", 0, UINT32_MAX, &version, ld->err,
				     ld->errlen)) < 0)
		return rc;
	if (version != PROFILE_VERSION)
		return settings_yaml_error(ld->err, ld->errlen, ld->label, val[0],
					   "version: %llu is not supported (expected %d)",
					   (unsigned long long)version, PROFILE_VERSION);
	if (val[1] && !is_empty(val[1]) &&
	    (rc = settings_yaml_string(ld->label, val[1], "name", ld->p->name, sizeof(ld->p->name),
				       ld->err, ld->errlen)) < 0)
		return rc;
	if (val[2] && !is_empty(val[2])) {
		ld->defaults_set = keys_set(ld, val[2]);
		rc = settings_yaml_apply(ld->label, ld->doc, val[2], &ld->p->defaults, ld->err,
					 ld->errlen);
		if (rc == -EINVAL) {
			struct source src[] = {{"defaults", ld->defaults_set}};
			return relabel(ld, src, 1, NULL);
		}
		if (rc < 0)
			return rc;
	}
	if (val[3] && (rc = load_overrides(ld, val[3])) < 0)
		return rc;
	return content_hash(ld->p);
}

static int load_document(const char *label, yaml_document_t *doc, struct profile **out, char *err,
			 size_t errlen)
{
	struct loader ld = {.label = label, .doc = doc, .err = err, .errlen = errlen};
	int rc;

	*out = NULL;
	if (!(ld.p = calloc(1, sizeof(*ld.p))))
		return -ENOMEM;
	rc = load_root(&ld, yaml_document_get_root_node(doc));
	free(ld.ov_nodes);
	if (rc < 0) {
		if (rc == -ENOMEM)
			snprintf(err, errlen, "%s: out of memory", label);
		profile_free(ld.p);
		return rc;
	}
	*out = ld.p;
	return 0;
}

int profile_load_file(const char *path, struct profile **out, char *err, size_t errlen)
{
	yaml_document_t doc;
	int rc;

	*out = NULL;
	if ((rc = settings_yaml_load_document(path, &doc, err, errlen)) < 0)
		return rc;
	rc = load_document(path, &doc, out, err, errlen);
	yaml_document_delete(&doc);
	return rc;
}

int profile_load_string(const char *label, const char *text, size_t len, struct profile **out,
			char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	int rc;

	*out = NULL;
	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, errlen, "%s: out of memory", label);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, errlen, "%s:%zu:%zu: YAML syntax error: %s", label,
			 parser.problem_mark.line + 1, parser.problem_mark.column + 1,
			 parser.problem ? parser.problem : "unknown");
		yaml_parser_delete(&parser);
		return -EINVAL;
	}
	yaml_parser_delete(&parser);
	rc = load_document(label, &doc, out, err, errlen);
	yaml_document_delete(&doc);
	return rc;
}

void profile_free(struct profile *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_ov_cap; i++) {
		struct override *ov = &p->ov[i];
		free(ov->node);
		for (size_t l = 0; l < ov->n_labels; l++) {
			free(ov->labels[l].key);
			free(ov->labels[l].value);
		}
		free(ov->labels);
	}
	free(p->ov);
	free(p);
}

const char *profile_name(const struct profile *p)
{
	return p->name;
}

size_t profile_override_count(const struct profile *p)
{
	return p->n_ov;
}

const char *profile_content_hash(const struct profile *p)
{
	return p->content_hash;
}

static const char *label_value(const struct profile_label *labels, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (labels[i].key && labels[i].value && strcmp(labels[i].key, key) == 0)
			return labels[i].value;
	return NULL;
}

static bool matches(const struct override *ov, const char *node, const struct profile_label *labels,
		    size_t n_labels)
{
	if (ov->node && (!node || fnmatch(ov->node, node, 0) != 0))
		return false;
	for (size_t i = 0; i < ov->n_labels; i++) {
		const char *v = label_value(labels, n_labels, ov->labels[i].key);
		if (!v || strcmp(v, ov->labels[i].value) != 0)
			return false;
	}
	return true;
}

bool profile_override_matches(const struct profile *p, size_t i, const char *node,
			      const struct profile_label *labels, size_t n_labels)
{
	return i < p->n_ov && matches(&p->ov[i], node, labels, n_labels);
}

size_t profile_resolve(const struct profile *p, const char *node,
		       const struct profile_label *labels, size_t n_labels,
		       struct tapio_settings *out)
{
	size_t applied = 0;

	*out = p->defaults;
	for (size_t i = 0; i < p->n_ov; i++) {
		if (!matches(&p->ov[i], node, labels, n_labels))
			continue;
		apply_override(out, &p->ov[i]);
		applied++;
	}
	return applied;
}

int profile_hash_for(const struct profile *p, const char *node, const struct profile_label *labels,
		     size_t n_labels, char out[CONFIG_HASH_LEN])
{
	struct tapio_settings s;

	profile_resolve(p, node, labels, n_labels, &s);
	return config_hash_settings(&s, out);
}
