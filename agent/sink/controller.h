/*
 * The controller sink: the agent's sink interface (sink.h) on top of the controller client
 * (agent/client/client.h). Lines handed to sink_write are the agent's JSON encoding of one
 * occurrence; they are parsed back (losslessly, occ_json_parse) and submitted to the client.
 * Agents that hold the occurrence itself use sink_controller_submit and skip the parse.
 */
#ifndef TAPIO_SINK_CONTROLLER_H
#define TAPIO_SINK_CONTROLLER_H

#include "agent/client/client.h"
#include "agent/sink/sink.h"

/*
 * Creates the client (spool recovery included) and starts connecting. Returns the sink, or
 * NULL with a message in err. The sink owns the client; close() closes it (the open batch is
 * sealed and whatever is unacknowledged stays in the spool).
 */
struct sink *sink_controller_new(uv_loop_t *loop, const struct client_options *o, char *err,
				 size_t errlen);

/* The client behind the sink (counters, config generation). Owned by the sink. */
struct client *sink_controller_client(struct sink *s);

/* Submits one occurrence without the JSON round trip. Same accounting as write(). */
int sink_controller_submit(struct sink *s, const struct tapio_occurrence *occ);

#endif
