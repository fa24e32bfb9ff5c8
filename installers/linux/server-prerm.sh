#!/bin/sh
# mamori-server pre-remove: stop the service; the data dir stays.
set -e
if [ -d /run/systemd/system ]; then
	systemctl stop mamori-server.service || true
	case "$1" in remove|0) systemctl disable mamori-server.service || true ;; esac
fi
exit 0
