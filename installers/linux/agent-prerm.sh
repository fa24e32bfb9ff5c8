#!/bin/sh
# mamori-agent pre-remove: stop the service (it ships what it can for up to
# 10 s and says in the journal what stays in the spool). The state dir
# (identity, spool) stays for a reinstall.
set -e
if [ -d /run/systemd/system ]; then
	systemctl stop mamori-agent.service || true
	case "$1" in remove|0) systemctl disable mamori-agent.service || true ;; esac
fi
exit 0
