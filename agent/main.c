/* tapio-agent: parse the config, build the agent, run its loop until SIGINT/SIGTERM. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "agent/agent_config.h"
#include "common/log.h"

int main(int argc, char **argv)
{
	struct agent_config cfg;
	struct agent *a;
	char err[512];
	int rc;

	/* A closed stdout pipe (tapio-agent | head) must be an error we count, not a kill. */
	signal(SIGPIPE, SIG_IGN);

	rc = agent_config_parse(argc, argv, &cfg, stdout, err, sizeof(err));
	if (rc == AGENT_CONFIG_EXIT)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "tapio-agent: %s\n", err);
		return 2;
	}
	log_set_level((enum log_level)cfg.log_level);
	if (cfg.controller[0] && !(cfg.sinks & AGENT_SINK_CONTROLLER))
		log_warn("agent",
			 "controller %s is set but the controller sink is not selected "
			 "(add --sink controller); not connecting",
			 cfg.controller);
	rc = agent_config_persist_id(&cfg);
	if (rc < 0 && rc != -ENOENT)
		log_warn("agent", "agent id %s is not kept across restarts: %s/agent-id: %s",
			 cfg.agent_id, cfg.data_dir, strerror(-rc));

	a = agent_new(&cfg, err, sizeof(err));
	if (!a) {
		fprintf(stderr, "tapio-agent: %s\n", err);
		return 1;
	}
	rc = agent_run(a);
	agent_free(a);
	return rc == 0 ? 0 : 1;
}
