#!/bin/sh
# mamori-server post-install: enable and (re)start the service.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	systemctl enable mamori-server.service || true
	systemctl restart mamori-server.service || true
	echo "mamori-server: started; 'journalctl -u mamori-server' shows the dashboard URL and the enroll command; the admin password is in /var/lib/mamori-server/initial-admin-password" >&2
fi
exit 0
