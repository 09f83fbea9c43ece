/* TLS 1.3 over memory BIOs: contexts, per-connection state, failure classification. */
#include "common/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct tls_ctx {
	SSL_CTX *ssl;
	bool server, mutual;
	char *server_name; /* client contexts */
	bool name_is_ip;
	int refs;
};

struct tls_conn {
	struct tls_ctx *ctx;
	SSL *ssl;
	BIO *rbio, *wbio; /* owned by ssl */
	uint8_t *held;	  /* plaintext written before the handshake completed */
	size_t held_len, held_cap;
	bool established, failed, peer_closed, shutdown_sent;
	enum tls_fail fail;
	char error[160];
};

static const char *const fail_names[TLS_FAIL__COUNT] = {
    [TLS_FAIL_NONE] = "none",
    [TLS_FAIL_NO_PEER_CERT] = "no_peer_cert",
    [TLS_FAIL_UNKNOWN_CA] = "unknown_ca",
    [TLS_FAIL_EXPIRED] = "expired",
    [TLS_FAIL_HOSTNAME] = "hostname_mismatch",
    [TLS_FAIL_BAD_CERT] = "bad_cert",
    [TLS_FAIL_PEER_REFUSED] = "peer_refused",
    [TLS_FAIL_NOT_TLS] = "not_tls",
    [TLS_FAIL_PROTOCOL] = "protocol",
    [TLS_FAIL_INTERNAL] = "internal",
};

const char *tls_fail_name(enum tls_fail f)
{
	return (unsigned)f < TLS_FAIL__COUNT ? fail_names[f] : "unknown";
}

/* ---- contexts ---------------------------------------------------------------------------- */

/* Encrypted keys are refused instead of prompting on a terminal the daemon does not own. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return 0;
}

/* The innermost OpenSSL reason, never file contents ("no such file", "bad decrypt", …). */
static const char *ossl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	return r ? r : "unknown error";
}

static struct tls_ctx *ctx_alloc(bool server, char *err, size_t errlen)
{
	struct tls_ctx *ctx = calloc(1, sizeof(*ctx));

	if (!ctx) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	ctx->server = server;
	ctx->refs = 1;
	ctx->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx->ssl || !SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_3_VERSION)) {
		snprintf(err, errlen, "cannot create a TLS context: %s", ossl_reason());
		SSL_CTX_free(ctx->ssl);
		free(ctx);
		return NULL;
	}
	/* idle connections give their record buffers back */
	SSL_CTX_set_mode(ctx->ssl, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_default_passwd_cb(ctx->ssl, no_passphrase);
	return ctx;
}

static void ctx_put(struct tls_ctx *ctx)
{
	if (!ctx || --ctx->refs > 0)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx->server_name);
	free(ctx);
}

void tls_ctx_free(struct tls_ctx *ctx)
{
	ctx_put(ctx);
}

void *tls_ctx_native(struct tls_ctx *ctx)
{
	return ctx ? ctx->ssl : NULL;
}

bool tls_ctx_mutual(const struct tls_ctx *ctx)
{
	return ctx && ctx->mutual;
}

/* Loads a certificate chain and its key and checks they belong together. */
static int load_pair(SSL_CTX *ssl, const char *cert, const char *key, char *err, size_t errlen)
{
	if (SSL_CTX_use_certificate_chain_file(ssl, cert) != 1) {
		snprintf(err, errlen, "cannot load certificate %s: %s", cert, ossl_reason());
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ssl, key, SSL_FILETYPE_PEM) != 1 &&
	    ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
		snprintf(err, errlen, "cannot load private key %s: %s", key, ossl_reason());
		return -1;
	}
	if (SSL_CTX_check_private_key(ssl) != 1) {
		snprintf(err, errlen, "private key %s does not match certificate %s", key, cert);
		return -1;
	}
	return 0;
}

static int load_ca(SSL_CTX *ssl, const char *ca, char *err, size_t errlen)
{
	if (SSL_CTX_load_verify_locations(ssl, ca, NULL) != 1) {
		snprintf(err, errlen, "cannot load CA certificates %s: %s", ca, ossl_reason());
		return -1;
	}
	return 0;
}

struct tls_ctx *tls_ctx_new_server(const struct tls_server_options *o, char *err, size_t errlen)
{
	struct tls_ctx *ctx;

	if (!o->cert_file || !*o->cert_file || !o->key_file || !*o->key_file) {
		snprintf(err, errlen, "a TLS server needs a certificate and a key");
		return NULL;
	}
	ERR_clear_error();
	ctx = ctx_alloc(true, err, errlen);
	if (!ctx)
		return NULL;
	if (load_pair(ctx->ssl, o->cert_file, o->key_file, err, errlen) < 0)
		goto fail;
	if (o->client_ca_file && *o->client_ca_file) {
		STACK_OF(X509_NAME) * names;

		if (load_ca(ctx->ssl, o->client_ca_file, err, errlen) < 0)
			goto fail;
		names = SSL_load_client_CA_file(o->client_ca_file);
		if (!names) {
			snprintf(err, errlen, "no CA certificate in %s", o->client_ca_file);
			goto fail;
		}
		SSL_CTX_set_client_CA_list(ctx->ssl, names);
		SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
				   NULL);
		ctx->mutual = true;
	}
	/* agents reconnect rarely and never resume: tickets would only cost bytes */
	SSL_CTX_set_num_tickets(ctx->ssl, 0);
	SSL_CTX_set_session_cache_mode(ctx->ssl, SSL_SESS_CACHE_OFF);
	ERR_clear_error();
	return ctx;
fail:
	ERR_clear_error();
	ctx_put(ctx);
	return NULL;
}

struct tls_ctx *tls_ctx_new_client(const struct tls_client_options *o, char *err, size_t errlen)
{
	struct tls_ctx *ctx;
	unsigned char addr[16];
	bool has_cert = o->cert_file && *o->cert_file, has_key = o->key_file && *o->key_file;

	if (!o->ca_file || !*o->ca_file) {
		snprintf(err, errlen, "a TLS client needs a CA file to verify the server");
		return NULL;
	}
	if (!o->server_name || !*o->server_name) {
		snprintf(err, errlen, "a TLS client needs the server name to verify");
		return NULL;
	}
	if (has_cert != has_key) {
		snprintf(err, errlen,
			 "a client certificate needs its key (and a key its certificate)");
		return NULL;
	}
	ERR_clear_error();
	ctx = ctx_alloc(false, err, errlen);
	if (!ctx)
		return NULL;
	if (load_ca(ctx->ssl, o->ca_file, err, errlen) < 0)
		goto fail;
	if (has_cert && load_pair(ctx->ssl, o->cert_file, o->key_file, err, errlen) < 0)
		goto fail;
	SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_session_cache_mode(ctx->ssl, SSL_SESS_CACHE_OFF);
	ctx->server_name = strdup(o->server_name);
	if (!ctx->server_name) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	ctx->name_is_ip = inet_pton(AF_INET, o->server_name, addr) == 1 ||
			  inet_pton(AF_INET6, o->server_name, addr) == 1;
	ERR_clear_error();
	return ctx;
fail:
	ERR_clear_error();
	ctx_put(ctx);
	return NULL;
}

/* ---- connections ------------------------------------------------------------------------- */

struct tls_conn *tls_conn_new(struct tls_ctx *ctx)
{
	struct tls_conn *t = calloc(1, sizeof(*t));
	int ok = 1;

	if (!t)
		return NULL;
	t->ssl = SSL_new(ctx->ssl);
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (!t->ssl || !t->rbio || !t->wbio) {
		SSL_free(t->ssl);
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		free(t);
		ERR_clear_error();
		return NULL;
	}
	/* an empty read BIO means "more to come", not end of stream */
	BIO_set_mem_eof_return(t->rbio, -1);
	BIO_set_mem_eof_return(t->wbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	if (ctx->server) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		if (ctx->name_is_ip) {
			ok =
			    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), ctx->server_name);
		} else {
			/* SNI only for names (RFC 6066 forbids address literals) */
			ok = SSL_set_tlsext_host_name(t->ssl, ctx->server_name) == 1 &&
			     SSL_set1_host(t->ssl, ctx->server_name) == 1;
		}
	}
	if (!ok) {
		SSL_free(t->ssl);
		free(t);
		ERR_clear_error();
		return NULL;
	}
	t->ctx = ctx;
	ctx->refs++;
	return t;
}

void tls_conn_free(struct tls_conn *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	free(t->held);
	ctx_put(t->ctx);
	free(t);
}

static enum tls_fail verify_kind(long vr)
{
	switch (vr) {
	case X509_V_ERR_CERT_HAS_EXPIRED:
	case X509_V_ERR_CERT_NOT_YET_VALID:
		return TLS_FAIL_EXPIRED;
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
	case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
	case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
	case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
	case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
	case X509_V_ERR_CERT_SIGNATURE_FAILURE:
		return TLS_FAIL_UNKNOWN_CA;
	case X509_V_ERR_HOSTNAME_MISMATCH:
	case X509_V_ERR_IP_ADDRESS_MISMATCH:
		return TLS_FAIL_HOSTNAME;
	default:
		return TLS_FAIL_BAD_CERT;
	}
}

static void fail_set(struct tls_conn *t, enum tls_fail kind, const char *fmt, const char *arg)
{
	t->failed = true;
	t->fail = kind;
	snprintf(t->error, sizeof(t->error), fmt, arg);
}

/* Alert names, including the TLS 1.3 ones OpenSSL 3.0 prints as "unknown". */
static const char *alert_name(int alert)
{
	switch (alert) {
	case SSL_AD_CERTIFICATE_REQUIRED:
		return "certificate required";
	case SSL_AD_UNKNOWN_CA:
		return "unknown CA";
	case SSL_AD_CERTIFICATE_EXPIRED:
		return "certificate expired";
	case SSL_AD_BAD_CERTIFICATE:
		return "bad certificate";
	case SSL_AD_MISSING_EXTENSION:
		return "missing extension";
	case SSL_AD_UNRECOGNIZED_NAME:
		return "unrecognized name";
	case SSL_AD_PROTOCOL_VERSION:
		return "protocol version (TLS 1.3 required)";
	default:
		return SSL_alert_desc_string_long(alert);
	}
}

/* Records why the last SSL call failed (ret, as returned by it). */
static void classify(struct tls_conn *t, int ret)
{
	int e = SSL_get_error(t->ssl, ret);
	const char *peer = t->ctx->server ? "client" : "server";
	unsigned long code;
	int reason;

	if (e == SSL_ERROR_SYSCALL || e != SSL_ERROR_SSL) {
		fail_set(t, TLS_FAIL_PROTOCOL, "TLS stream ended unexpectedly%s", "");
		ERR_clear_error();
		return;
	}
	code = ERR_peek_error();
	reason = ERR_GET_REASON(code);
	if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
		long vr = SSL_get_verify_result(t->ssl);
		char msg[120];

		snprintf(msg, sizeof(msg), "%s certificate rejected: %s", peer,
			 X509_verify_cert_error_string(vr));
		fail_set(t, verify_kind(vr), "%s", msg);
		if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
			snprintf(t->error, sizeof(t->error),
				 "server certificate does not name '%s' (hostname mismatch; see "
				 "--tls-server-name)",
				 t->ctx->server_name ? t->ctx->server_name : "");
	} else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
		fail_set(t, TLS_FAIL_NO_PEER_CERT,
			 "client sent no certificate (mutual TLS requires one)%s", "");
	} else if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_HTTP_REQUEST ||
		   reason == SSL_R_HTTPS_PROXY_REQUEST || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
		   reason == SSL_R_UNEXPECTED_RECORD || reason == SSL_R_UNKNOWN_PROTOCOL ||
		   reason == SSL_R_WRONG_SSL_VERSION) {
		fail_set(t, TLS_FAIL_NOT_TLS, "%s does not speak TLS (plaintext peer?)", peer);
	} else if (reason > SSL_AD_REASON_OFFSET && reason < SSL_AD_REASON_OFFSET + 256) {
		int alert = reason - SSL_AD_REASON_OFFSET;
		char msg[120];

		snprintf(msg, sizeof(msg), "%s refused the connection: %s", peer,
			 alert_name(alert));
		fail_set(t, TLS_FAIL_PEER_REFUSED, "%s", msg);
	} else if (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_NO_PROTOCOLS_AVAILABLE) {
		fail_set(t, TLS_FAIL_PROTOCOL, "%s does not support TLS 1.3", peer);
	} else if (ERR_GET_LIB(code) == ERR_LIB_SSL || code) {
		const char *r = ERR_reason_error_string(code);

		fail_set(t, TLS_FAIL_PROTOCOL, "TLS error: %s", r ? r : "unknown");
	} else {
		fail_set(t, TLS_FAIL_INTERNAL, "TLS library failure%s", "");
	}
	ERR_clear_error();
}

static int held_append(struct tls_conn *t, const void *data, size_t len)
{
	if (t->held_len + len > t->held_cap) {
		size_t cap = t->held_cap ? t->held_cap : 1024;
		uint8_t *p;

		while (cap < t->held_len + len)
			cap *= 2;
		p = realloc(t->held, cap);
		if (!p)
			return -ENOMEM;
		t->held = p;
		t->held_cap = cap;
	}
	memcpy(t->held + t->held_len, data, len);
	t->held_len += len;
	return 0;
}

/* Encrypts data now; with a memory BIO SSL_write takes everything or fails. */
static int encrypt(struct tls_conn *t, const void *data, size_t len)
{
	while (len > 0) {
		int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
		int n;

		ERR_clear_error();
		n = SSL_write(t->ssl, data, chunk);
		if (n <= 0) {
			int e = SSL_get_error(t->ssl, n);

			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return held_append(t, data, len); /* post-handshake message */
			classify(t, n);
			return -EPROTO;
		}
		data = (const uint8_t *)data + n;
		len -= (size_t)n;
	}
	return 0;
}

static int flush_held(struct tls_conn *t)
{
	uint8_t *p = t->held;
	size_t len = t->held_len;
	int r;

	if (!len)
		return 0;
	t->held = NULL;
	t->held_len = t->held_cap = 0;
	r = encrypt(t, p, len);
	free(p);
	return r;
}

/* Advances the handshake. Returns 1 when established, 0 when waiting, -EPROTO. */
static int handshake(struct tls_conn *t)
{
	int r;

	if (t->established)
		return 1;
	ERR_clear_error();
	r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		t->established = true;
		return flush_held(t) < 0 ? -EPROTO : 1;
	}
	r = SSL_get_error(t->ssl, r);
	if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
		return 0;
	classify(t, -1);
	return -EPROTO;
}

int tls_conn_start(struct tls_conn *t)
{
	return handshake(t) < 0 ? -EPROTO : 0;
}

int tls_conn_feed(struct tls_conn *t, const void *data, size_t len)
{
	while (len > 0) {
		int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
		int n = BIO_write(t->rbio, data, chunk);

		if (n <= 0)
			return -ENOMEM;
		data = (const uint8_t *)data + n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t tls_conn_read(struct tls_conn *t, void *buf, size_t cap)
{
	int n, e, h;

	if (t->failed)
		return -EPROTO;
	if (t->peer_closed)
		return -EPIPE;
	h = handshake(t);
	if (h <= 0)
		return h;
	if (cap > INT32_MAX)
		cap = INT32_MAX;
	ERR_clear_error();
	n = SSL_read(t->ssl, buf, (int)cap);
	if (n > 0) {
		if (t->held_len && flush_held(t) < 0)
			return -EPROTO;
		return n;
	}
	e = SSL_get_error(t->ssl, n);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
		return t->held_len && flush_held(t) < 0 ? -EPROTO : 0;
	if (e == SSL_ERROR_ZERO_RETURN) {
		t->peer_closed = true;
		return -EPIPE;
	}
	classify(t, n);
	return -EPROTO;
}

int tls_conn_write(struct tls_conn *t, const void *data, size_t len)
{
	if (t->failed)
		return -EPROTO;
	if (t->shutdown_sent)
		return -EPIPE;
	if (len == 0)
		return 0;
	if (!t->established || t->held_len)
		return held_append(t, data, len);
	return encrypt(t, data, len);
}

int tls_conn_shutdown(struct tls_conn *t)
{
	if (t->shutdown_sent || t->failed)
		return 0;
	t->shutdown_sent = true;
	if (!t->established)
		return 0;
	ERR_clear_error();
	if (SSL_shutdown(t->ssl) < 0) {
		ERR_clear_error();
		return -EPROTO;
	}
	return 0;
}

size_t tls_conn_output_pending(const struct tls_conn *t)
{
	return BIO_ctrl_pending(t->wbio);
}

size_t tls_conn_output_read(struct tls_conn *t, void *dst, size_t cap)
{
	int n;

	if (cap > INT32_MAX)
		cap = INT32_MAX;
	n = cap ? BIO_read(t->wbio, dst, (int)cap) : 0;
	return n > 0 ? (size_t)n : 0;
}

bool tls_conn_established(const struct tls_conn *t)
{
	return t->established && !t->failed;
}

size_t tls_conn_held(const struct tls_conn *t)
{
	return t->held_len;
}

enum tls_fail tls_conn_fail_reason(const struct tls_conn *t)
{
	return t->failed ? t->fail : TLS_FAIL_NONE;
}

const char *tls_conn_error(const struct tls_conn *t)
{
	return t->failed ? t->error : "";
}

const char *tls_conn_peer_name(const struct tls_conn *t, char *buf, size_t len)
{
	X509 *cert = SSL_get0_peer_certificate(t->ssl);

	if (!len)
		return buf;
	buf[0] = '\0';
	if (cert && X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf,
					      (int)len) < 0)
		buf[0] = '\0';
	return buf;
}

const char *tls_conn_describe(const struct tls_conn *t, char *buf, size_t len)
{
	if (!len)
		return buf;
	buf[0] = '\0';
	if (t->established)
		snprintf(buf, len, "%s %s", SSL_get_version(t->ssl),
			 SSL_CIPHER_get_name(SSL_get_current_cipher(t->ssl)));
	return buf;
}

bool tls_token_equal(const char *presented, const char *expected)
{
	size_t pl, el;
	unsigned char diff;

	presented = presented ? presented : "";
	expected = expected ? expected : "";
	pl = strlen(presented);
	el = strlen(expected);
	/* compare against the expected length only, so the work does not depend on the guess */
	diff = (unsigned char)(pl != el);
	if (el > 0)
		diff |= (unsigned char)(CRYPTO_memcmp(pl == el ? presented : expected, expected,
						      el) != 0);
	return diff == 0;
}

int tls_read_token_file(const char *path, char *buf, size_t len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[TLS_TOKEN_MAX + 2];
	size_t a = 0, b;

	if (!f) {
		snprintf(err, errlen, "cannot read token file %s: %s", path, strerror(errno));
		return -1;
	}
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	b = strlen(line);
	while (b > 0 && isspace((unsigned char)line[b - 1]))
		b--;
	while (a < b && isspace((unsigned char)line[a]))
		a++;
	if (a == b) {
		snprintf(err, errlen, "token file %s is empty", path);
		return -1;
	}
	if (b - a >= len || b - a > TLS_TOKEN_MAX) {
		snprintf(err, errlen, "token in %s is too long (at most %d bytes)", path,
			 TLS_TOKEN_MAX);
		return -1;
	}
	memcpy(buf, line + a, b - a);
	buf[b - a] = '\0';
	explicit_bzero(line, sizeof(line));
	return 0;
}
