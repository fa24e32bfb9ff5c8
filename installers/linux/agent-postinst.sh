#!/bin/sh
# mamori-agent post-install: write the agent's protected config from
# /etc/mamori/agent.env when the admin provided one (never contacting the
# server: the service enrolls itself at start), then enable and (re)start
# the service where systemd runs.
set -e
state=/var/lib/mamori-agent
mkdir -p "$state"
chmod 0700 "$state"
if [ -f /etc/mamori/agent.env ]; then
	chmod 0600 /etc/mamori/agent.env
	if grep -q '^[[:space:]]*\(export[[:space:]]\+\)\?MAMORI_SERVER=' /etc/mamori/agent.env; then
		/usr/bin/mamori-agent configure --env-file /etc/mamori/agent.env --state-dir "$state"
	fi
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	systemctl enable mamori-agent.service || true
	systemctl restart mamori-agent.service || true
else
	echo "mamori-agent: systemd is not running; start the agent with: mamori-agent run" >&2
fi
if ! [ -f "$state/config.json" ] && ! [ -f "$state/agent.json" ]; then
	echo "mamori-agent: not configured yet. Write /etc/mamori/agent.env (see agent.env.example) and reinstall the package, or run mamori-agent configure --server URL --token T --ca-hash sha256:HEX && systemctl restart mamori-agent" >&2
fi
exit 0
