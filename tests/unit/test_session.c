/* The controller's per-connection protocol state machine: legal and illegal frames per state. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/codec.h"
#include "controller/session.h"

#define UNEXPECTED TAPIO__V1__ERROR_CODE__ERROR_CODE_UNEXPECTED_MESSAGE
#define SEQUENCE   TAPIO__V1__ERROR_CODE__ERROR_CODE_SEQUENCE

static Tapio__V1__Hello hello;
static Tapio__V1__Welcome welcome;
static Tapio__V1__Heartbeat heartbeat;
static Tapio__V1__EventBatch batch;
static Tapio__V1__Ack ack;
static Tapio__V1__ConfigPush push;
static Tapio__V1__ConfigApplied applied;
static Tapio__V1__ConfigRejected rejected;
static Tapio__V1__Error error;

static void init_msgs(void)
{
	tapio__v1__hello__init(&hello);
	hello.wire_version = CODEC_WIRE_VERSION;
	hello.agent_id = "agent";
	hello.session_id = 42;
	tapio__v1__welcome__init(&welcome);
	tapio__v1__heartbeat__init(&heartbeat);
	tapio__v1__event_batch__init(&batch);
	batch.session_id = 42;
	batch.sequence = 1;
	tapio__v1__ack__init(&ack);
	tapio__v1__config_push__init(&push);
	tapio__v1__config_applied__init(&applied);
	tapio__v1__config_rejected__init(&rejected);
	tapio__v1__error__init(&error);
}

static Tapio__V1__Frame frame(Tapio__V1__Frame__MsgCase kind)
{
	Tapio__V1__Frame f = TAPIO__V1__FRAME__INIT;

	f.msg_case = kind;
	switch (kind) {
	case TAPIO__V1__FRAME__MSG_HELLO:
		f.hello = &hello;
		break;
	case TAPIO__V1__FRAME__MSG_WELCOME:
		f.welcome = &welcome;
		break;
	case TAPIO__V1__FRAME__MSG_HEARTBEAT:
		f.heartbeat = &heartbeat;
		break;
	case TAPIO__V1__FRAME__MSG_EVENT_BATCH:
		f.event_batch = &batch;
		break;
	case TAPIO__V1__FRAME__MSG_ACK:
		f.ack = &ack;
		break;
	case TAPIO__V1__FRAME__MSG_CONFIG_PUSH:
		f.config_push = &push;
		break;
	case TAPIO__V1__FRAME__MSG_CONFIG_APPLIED:
		f.config_applied = &applied;
		break;
	case TAPIO__V1__FRAME__MSG_CONFIG_REJECTED:
		f.config_rejected = &rejected;
		break;
	case TAPIO__V1__FRAME__MSG_ERROR:
		f.error = &error;
		break;
	default:
		break;
	}
	return f;
}

static enum session_action classify(const struct session *s, Tapio__V1__Frame__MsgCase kind,
				    Tapio__V1__ErrorCode *code)
{
	Tapio__V1__Frame f = frame(kind);
	const char *why = NULL;
	enum session_action a;

	*code = TAPIO__V1__ERROR_CODE__ERROR_CODE_UNSPECIFIED;
	a = session_classify(s, &f, code, &why);
	if (a == SESSION_ACT_REFUSE)
		cr_assert(why && why[0], "a refusal needs a reason");
	return a;
}

TestSuite(session, .init = init_msgs);

Test(session, await_hello_accepts_only_hello, .timeout = 10)
{
	struct session s;
	Tapio__V1__ErrorCode code;
	const Tapio__V1__Frame__MsgCase illegal[] = {
	    TAPIO__V1__FRAME__MSG_WELCOME,	   TAPIO__V1__FRAME__MSG_HEARTBEAT,
	    TAPIO__V1__FRAME__MSG_EVENT_BATCH,	   TAPIO__V1__FRAME__MSG_ACK,
	    TAPIO__V1__FRAME__MSG_CONFIG_PUSH,	   TAPIO__V1__FRAME__MSG_CONFIG_APPLIED,
	    TAPIO__V1__FRAME__MSG_CONFIG_REJECTED, TAPIO__V1__FRAME__MSG__NOT_SET,
	};

	session_init(&s);
	cr_assert_eq(s.state, SESSION_AWAIT_HELLO);
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_HELLO, &code), SESSION_ACT_HELLO);
	for (size_t i = 0; i < sizeof(illegal) / sizeof(illegal[0]); i++) {
		cr_assert_eq(classify(&s, illegal[i], &code), SESSION_ACT_REFUSE, "kind %d",
			     illegal[i]);
		cr_assert_eq(code, UNEXPECTED);
	}
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_ERROR, &code), SESSION_ACT_PEER_ERROR);
	cr_assert_eq(s.state, SESSION_AWAIT_HELLO, "classification must not change the state");
}

Test(session, hello_checks, .timeout = 10)
{
	struct session s;
	Tapio__V1__ErrorCode code;

	session_init(&s);
	hello.wire_version = 2;
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_HELLO, &code), SESSION_ACT_REFUSE);
	cr_assert_eq(code, TAPIO__V1__ERROR_CODE__ERROR_CODE_WIRE_VERSION);
	hello.wire_version = 0;
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_HELLO, &code), SESSION_ACT_REFUSE);
	cr_assert_eq(code, TAPIO__V1__ERROR_CODE__ERROR_CODE_WIRE_VERSION);
	hello.wire_version = CODEC_WIRE_VERSION;
	hello.agent_id = "";
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_HELLO, &code), SESSION_ACT_REFUSE);
	cr_assert_eq(code, TAPIO__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
	{
		static char long_id[SESSION_MAX_AGENT_ID + 2];

		memset(long_id, 'a', SESSION_MAX_AGENT_ID + 1);
		hello.agent_id = long_id;
		cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_HELLO, &code), SESSION_ACT_REFUSE);
		cr_assert_eq(code, TAPIO__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
		long_id[SESSION_MAX_AGENT_ID] = '\0';
		cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_HELLO, &code), SESSION_ACT_HELLO);
	}
	hello.agent_id = "agent";
	hello.session_id = 0;
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_HELLO, &code), SESSION_ACT_REFUSE);
	cr_assert_eq(code, TAPIO__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
}

Test(session, established_legal_and_illegal, .timeout = 10)
{
	struct session s;
	Tapio__V1__ErrorCode code;

	session_init(&s);
	session_established(&s, 42);
	cr_assert_eq(s.state, SESSION_ESTABLISHED);
	cr_assert_eq(s.session_id, 42);
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_HEARTBEAT, &code), SESSION_ACT_HEARTBEAT);
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_EVENT_BATCH, &code), SESSION_ACT_BATCH);
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_CONFIG_APPLIED, &code),
		     SESSION_ACT_CONFIG_APPLIED);
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_CONFIG_REJECTED, &code),
		     SESSION_ACT_CONFIG_REJECTED);
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_ERROR, &code), SESSION_ACT_PEER_ERROR);
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_HELLO, &code), SESSION_ACT_REFUSE);
	cr_assert_eq(code, UNEXPECTED, "a second hello");
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_WELCOME, &code), SESSION_ACT_REFUSE);
	cr_assert_eq(code, UNEXPECTED);
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_ACK, &code), SESSION_ACT_REFUSE);
	cr_assert_eq(code, UNEXPECTED);
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_CONFIG_PUSH, &code), SESSION_ACT_REFUSE);
	cr_assert_eq(code, UNEXPECTED);
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG__NOT_SET, &code), SESSION_ACT_REFUSE);
	cr_assert_eq(code, UNEXPECTED);
}

Test(session, batch_sequence_rules, .timeout = 10)
{
	struct session s;
	Tapio__V1__ErrorCode code;

	session_init(&s);
	session_established(&s, 42);
	batch.session_id = 43;
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_EVENT_BATCH, &code), SESSION_ACT_REFUSE);
	cr_assert_eq(code, SEQUENCE, "another session");
	batch.session_id = 42;
	batch.sequence = 0;
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_EVENT_BATCH, &code), SESSION_ACT_REFUSE);
	cr_assert_eq(code, SEQUENCE, "sequence 0");
	batch.sequence = 5;
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_EVENT_BATCH, &code), SESSION_ACT_BATCH);
	session_batch_accepted(&s, 5);
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_EVENT_BATCH, &code), SESSION_ACT_REFUSE);
	cr_assert_eq(code, SEQUENCE, "same sequence twice on one connection");
	batch.sequence = 4;
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_EVENT_BATCH, &code), SESSION_ACT_REFUSE);
	cr_assert_eq(code, SEQUENCE, "backwards on one connection");
	batch.sequence = 9;
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_EVENT_BATCH, &code), SESSION_ACT_BATCH);
	/* a new connection of the same session may resend from anywhere */
	session_init(&s);
	session_established(&s, 42);
	batch.sequence = 1;
	cr_assert_eq(classify(&s, TAPIO__V1__FRAME__MSG_EVENT_BATCH, &code), SESSION_ACT_BATCH);
}

Test(session, closing_ignores_everything, .timeout = 10)
{
	struct session s;
	Tapio__V1__ErrorCode code;

	session_init(&s);
	session_closing(&s);
	for (int k = TAPIO__V1__FRAME__MSG_HELLO; k <= TAPIO__V1__FRAME__MSG_ERROR; k++)
		cr_assert_eq(classify(&s, (Tapio__V1__Frame__MsgCase)k, &code), SESSION_ACT_IGNORE);
	session_closing(&s);
	cr_assert_eq(s.state, SESSION_CLOSING);
	cr_assert_str_eq(session_state_name(SESSION_CLOSING), "closing");
}

Test(session, sequence_classification, .timeout = 10)
{
	cr_assert_eq(session_classify_seq(0, 1, false), SESSION_SEQ_NEXT);
	cr_assert_eq(session_classify_seq(4, 5, false), SESSION_SEQ_NEXT);
	cr_assert_eq(session_classify_seq(4, 7, false), SESSION_SEQ_GAP);
	cr_assert_eq(session_classify_seq(0, 3, false), SESSION_SEQ_GAP);
	cr_assert_eq(session_classify_seq(4, 4, true), SESSION_SEQ_DUPLICATE);
	cr_assert_eq(session_classify_seq(4, 2, true), SESSION_SEQ_DUPLICATE);
	cr_assert_eq(session_classify_seq(4, 2, false), SESSION_SEQ_REGRESSION);
	cr_assert_eq(session_classify_seq(4, 4, false), SESSION_SEQ_REGRESSION);
	cr_assert_str_eq(session_seq_name(SESSION_SEQ_GAP), "gap");
}
