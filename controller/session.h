/*
 * The per-connection protocol state machine of the controller (docs/protocol.md,
 * docs/controller.md): which message is legal in which state, and how a batch's sequence
 * relates to what the session already delivered. Pure logic: no I/O, no allocation, so every
 * transition is unit-testable (tests/unit/test_session.c). controller/ingest.c drives it.
 */
#ifndef TAPIO_CONTROLLER_SESSION_H
#define TAPIO_CONTROLLER_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "tapio.pb-c.h"

#define SESSION_MAX_AGENT_ID 128 /* longest agent_id accepted in a Hello */

enum session_state {
	SESSION_AWAIT_HELLO = 0, /* connected, nothing received yet */
	SESSION_ESTABLISHED,	 /* Hello accepted, Welcome sent */
	SESSION_CLOSING,	 /* an Error was queued or the peer is gone: input is ignored */
};

const char *session_state_name(enum session_state st);

/* What the connection must do with one received frame. */
enum session_action {
	SESSION_ACT_HELLO = 0,	     /* accept the Hello: register, answer Welcome */
	SESSION_ACT_HEARTBEAT,	     /* update the registry */
	SESSION_ACT_BATCH,	     /* store (or dedupe) the batch, Ack once durable */
	SESSION_ACT_CONFIG_APPLIED,  /* record the applied config */
	SESSION_ACT_CONFIG_REJECTED, /* record the rejection */
	SESSION_ACT_PEER_ERROR,	     /* the agent sent an Error: close without answering */
	SESSION_ACT_IGNORE,	     /* state is CLOSING: drop the frame */
	SESSION_ACT_REFUSE,	     /* send Error(*code), then close */
};

struct session {
	enum session_state state;
	uint64_t session_id;	 /* from the Hello */
	uint64_t last_batch_seq; /* sequence of the previous batch on this connection */
};

/* Starts a connection's session in SESSION_AWAIT_HELLO. Never fails. */
void session_init(struct session *s);

/*
 * Classifies frame f received in s's current state. On SESSION_ACT_REFUSE *code is the wire
 * error code to send and *why a static reason for the Error message; otherwise both are left
 * alone. Legal: Hello (exactly once, first, wire version CODEC_WIRE_VERSION, agent_id and
 * session_id set) → HELLO; after it Heartbeat, EventBatch (same session_id, sequence >= 1),
 * ConfigApplied, ConfigRejected. Refused: anything before Hello (UNEXPECTED_MESSAGE), a
 * second Hello, controller-to-agent messages (Welcome, Ack, ConfigPush) and frames carrying
 * no known message (UNEXPECTED_MESSAGE), another wire version (WIRE_VERSION), a Hello
 * without agent_id/session_id or with an agent_id over SESSION_MAX_AGENT_ID bytes (MALFORMED), a batch of another session, with sequence 0, or
 * whose sequence is not above the previous batch's on this connection (SEQUENCE: within one
 * connection sequences only increase; resends come on a new connection). Does not change s: the caller moves states with session_established()/
 * session_closing() once it has acted.
 */
enum session_action session_classify(const struct session *s, const Tapio__V1__Frame *f,
				     Tapio__V1__ErrorCode *code, const char **why);

/* Hello accepted: records its session id and moves to SESSION_ESTABLISHED. */
void session_established(struct session *s, uint64_t session_id);
/* Records the sequence of a batch the connection accepted (see session_classify). */
void session_batch_accepted(struct session *s, uint64_t sequence);
/* Moves to SESSION_CLOSING (idempotent). */
void session_closing(struct session *s);

/* How a batch's sequence relates to a session's history. */
enum session_seq {
	SESSION_SEQ_NEXT = 0,	/* last + 1 (or the first batch of a new session at 1) */
	SESSION_SEQ_GAP,	/* > last + 1: accepted, the missing ones are counted */
	SESSION_SEQ_DUPLICATE,	/* already stored: Ack, store nothing */
	SESSION_SEQ_REGRESSION, /* <= last but not stored: accepted and counted */
};

const char *session_seq_name(enum session_seq k);

/*
 * Classifies batch `sequence` of a session whose highest accepted sequence is `last` (0 =
 * none) given whether the store has already seen it (store_batch_seen). Never fails.
 */
enum session_seq session_classify_seq(uint64_t last, uint64_t sequence, bool seen);

#endif
