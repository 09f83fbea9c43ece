/* The controller's per-connection protocol state machine (see session.h). */
#include "controller/session.h"

#include <string.h>

#include "common/codec.h"

#define UNEXPECTED TAPIO__V1__ERROR_CODE__ERROR_CODE_UNEXPECTED_MESSAGE

const char *session_state_name(enum session_state st)
{
	switch (st) {
	case SESSION_AWAIT_HELLO:
		return "await_hello";
	case SESSION_ESTABLISHED:
		return "established";
	case SESSION_CLOSING:
		return "closing";
	}
	return "unknown";
}

const char *session_seq_name(enum session_seq k)
{
	switch (k) {
	case SESSION_SEQ_NEXT:
		return "next";
	case SESSION_SEQ_GAP:
		return "gap";
	case SESSION_SEQ_DUPLICATE:
		return "duplicate";
	case SESSION_SEQ_REGRESSION:
		return "regression";
	}
	return "unknown";
}

void session_init(struct session *s)
{
	s->state = SESSION_AWAIT_HELLO;
	s->session_id = 0;
	s->last_batch_seq = 0;
}

void session_batch_accepted(struct session *s, uint64_t sequence)
{
	if (sequence > s->last_batch_seq)
		s->last_batch_seq = sequence;
}

void session_established(struct session *s, uint64_t session_id)
{
	s->state = SESSION_ESTABLISHED;
	s->session_id = session_id;
}

void session_closing(struct session *s)
{
	s->state = SESSION_CLOSING;
}

static enum session_action refuse(Tapio__V1__ErrorCode *code, const char **why,
				  Tapio__V1__ErrorCode c, const char *reason)
{
	*code = c;
	*why = reason;
	return SESSION_ACT_REFUSE;
}

static enum session_action classify_hello(const Tapio__V1__Hello *h, Tapio__V1__ErrorCode *code,
					  const char **why)
{
	if (codec_check_hello(h) != 0)
		return refuse(code, why, TAPIO__V1__ERROR_CODE__ERROR_CODE_WIRE_VERSION,
			      "unsupported wire version (controller speaks 1)");
	if (!h->agent_id || !h->agent_id[0])
		return refuse(code, why, TAPIO__V1__ERROR_CODE__ERROR_CODE_MALFORMED,
			      "hello without agent_id");
	if (strlen(h->agent_id) > SESSION_MAX_AGENT_ID)
		return refuse(code, why, TAPIO__V1__ERROR_CODE__ERROR_CODE_MALFORMED,
			      "agent_id longer than 128 bytes");
	if (h->session_id == 0)
		return refuse(code, why, TAPIO__V1__ERROR_CODE__ERROR_CODE_MALFORMED,
			      "hello without session_id");
	return SESSION_ACT_HELLO;
}

enum session_action session_classify(const struct session *s, const Tapio__V1__Frame *f,
				     Tapio__V1__ErrorCode *code, const char **why)
{
	if (s->state == SESSION_CLOSING)
		return SESSION_ACT_IGNORE;
	if (f->msg_case == TAPIO__V1__FRAME__MSG_ERROR)
		return SESSION_ACT_PEER_ERROR;
	if (s->state == SESSION_AWAIT_HELLO) {
		if (f->msg_case == TAPIO__V1__FRAME__MSG_HELLO)
			return classify_hello(f->hello, code, why);
		return refuse(code, why, UNEXPECTED, "expected hello as the first frame");
	}
	switch (f->msg_case) {
	case TAPIO__V1__FRAME__MSG_HEARTBEAT:
		return SESSION_ACT_HEARTBEAT;
	case TAPIO__V1__FRAME__MSG_EVENT_BATCH:
		if (f->event_batch->session_id != s->session_id)
			return refuse(code, why, TAPIO__V1__ERROR_CODE__ERROR_CODE_SEQUENCE,
				      "event batch for another session");
		if (f->event_batch->sequence == 0)
			return refuse(code, why, TAPIO__V1__ERROR_CODE__ERROR_CODE_SEQUENCE,
				      "event batch sequence 0 (sequences start at 1)");
		if (f->event_batch->sequence <= s->last_batch_seq)
			return refuse(code, why, TAPIO__V1__ERROR_CODE__ERROR_CODE_SEQUENCE,
				      "event batch sequence went backwards on this connection");
		return SESSION_ACT_BATCH;
	case TAPIO__V1__FRAME__MSG_CONFIG_APPLIED:
		return SESSION_ACT_CONFIG_APPLIED;
	case TAPIO__V1__FRAME__MSG_CONFIG_REJECTED:
		return SESSION_ACT_CONFIG_REJECTED;
	case TAPIO__V1__FRAME__MSG_HELLO:
		return refuse(code, why, UNEXPECTED, "second hello on one connection");
	case TAPIO__V1__FRAME__MSG_WELCOME:
	case TAPIO__V1__FRAME__MSG_ACK:
	case TAPIO__V1__FRAME__MSG_CONFIG_PUSH:
		return refuse(code, why, UNEXPECTED, "controller-to-agent message sent by agent");
	default:
		return refuse(code, why, UNEXPECTED, "frame carries no known message");
	}
}

enum session_seq session_classify_seq(uint64_t last, uint64_t sequence, bool seen)
{
	if (seen)
		return SESSION_SEQ_DUPLICATE;
	if (sequence <= last)
		return SESSION_SEQ_REGRESSION;
	if (sequence > last + 1)
		return SESSION_SEQ_GAP;
	return SESSION_SEQ_NEXT;
}
