/*
 * Conversions between the C models (struct tapio_occurrence, struct tapio_settings,
 * struct tapio_config) and their tapio.v1 protobuf messages. Outgoing conversions borrow:
 * they fill caller-provided (stack) messages whose strings point into the C struct, so they
 * never allocate and never fail. Incoming conversions copy and validate.
 */
#ifndef TAPIO_OCC_PROTO_H
#define TAPIO_OCC_PROTO_H

#include <stddef.h>

#include "common/occurrence.h"
#include "common/settings.h"
#include "tapio.pb-c.h"

/* Sub-messages an outgoing Occurrence points to; lives as long as the message. */
struct occ_proto_scratch {
	Tapio__V1__OccurrenceError error;
	Tapio__V1__Context context;
	union {
		Tapio__V1__NetworkData network;
		Tapio__V1__ContainerData container;
		Tapio__V1__StorageData storage;
		Tapio__V1__NodeData node;
	} data;
};

/*
 * Fills *msg (initialised here) from *occ. msg borrows strings from occ and sub-messages from
 * scratch: both must outlive every use of msg. occ->type selects the data member; an
 * out-of-range type leaves the data unset (and is refused by occ_from_proto). Never fails.
 */
void occ_to_proto(const struct tapio_occurrence *occ, Tapio__V1__Occurrence *msg,
		  struct occ_proto_scratch *scratch);

/*
 * Fills *occ (zeroed first) from *msg, copying every string. Refuses (returns -EINVAL with a
 * reason in err) unknown type/severity/outcome values, strings that do not fit their C field,
 * a data member that does not belong to the type's observer, a wrong source, protocol major
 * version or error code, and an address family other than 0/4/6. Occurrence invariants beyond
 * the encoding (ULID shape, node set, …) are occurrence_validate()'s job.
 */
int occ_from_proto(const Tapio__V1__Occurrence *msg, struct tapio_occurrence *occ, char *err,
		   size_t errlen);

/*
 * Fills *msg (initialised here) from *s; msg borrows s->ignored_exit_codes. Never fails.
 */
void settings_to_proto(const struct tapio_settings *s, Tapio__V1__Settings *msg);

/*
 * Fills *s from *msg. Returns 0, or -EINVAL (with err) when there are more ignored exit codes
 * than TAPIO_MAX_IGNORED_EXIT_CODES. Ranges are settings_validate()'s job.
 */
int settings_from_proto(const Tapio__V1__Settings *msg, struct tapio_settings *s, char *err,
			size_t errlen);

/*
 * Reads ConfigPush.config into *out: exactly sizeof(struct tapio_config) bytes, the current
 * TAPIO_ABI_VERSION, and a generation equal to push->generation. Returns 0 or -EINVAL (err).
 */
int config_from_proto(const Tapio__V1__ConfigPush *push, struct tapio_config *out, char *err,
		      size_t errlen);

#endif
