#!/usr/bin/env bash
# make demo: the whole product on this machine, on the embedded default.
# Builds both programs, starts mamori-server (embedded etcd + SQLite) in
# .demo/server, enrolls an agent on this machine into .demo/agent, applies a
# demo policy that watches .demo/顧客データ (with a sample file), and runs the
# agent in the foreground. Ctrl-C stops both. Needs only Go (and curl).
# Run again, it reuses .demo (DEMO_DIR=... puts it elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
port=${DEMO_PORT:-8443}
top=$PWD/.demo
top=${DEMO_DIR:-$top}
# A taken port would make the server exit with only "Error 1" from make.
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
	what="another program"
	curl -sk --max-time 2 "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && what="an HTTPS server (another Mamori demo?)"
	echo "make demo: port $port on 127.0.0.1 is already in use by $what." >&2
	echo "  Stop it, or pick another port: DEMO_PORT=$((port + 1)) make demo" >&2
	exit 1
fi

mkdir -p "$top/server" "$top/agent" "$top/顧客データ/2026"
[ -f "$top/顧客データ/2026/顧客名簿.csv" ] || printf '氏名,電話\n山田太郎,03-0000-0000\n' > "$top/顧客データ/2026/顧客名簿.csv"

echo "building..."
go build -o bin/mamori-server ./server
go build -o bin/mamori-agent ./agent

bin/mamori-server serve --data-dir "$top/server" --listen "127.0.0.1:$port" --hostname localhost,127.0.0.1 \
	> "$top/server.log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

for _ in $(seq 1 100); do
	curl -sk "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
	if ! kill -0 "$server" 2>/dev/null; then
		echo "make demo: the server failed to start:" >&2
		cat "$top/server.log" >&2
		if grep -q "address already in use" "$top/server.log"; then
			echo "  Port $port was taken meanwhile; pick another: DEMO_PORT=$((port + 1)) make demo" >&2
		fi
		exit 1
	fi
	sleep 0.2
done
url="https://127.0.0.1:$port"
admin=$(cat "$top/server/admin-token")
if ! [ -f "$top/agent/agent.json" ]; then
	# The CA's fingerprint: SHA-256 of its certificate (DER). Computed from
	# ca.pem, since the server prints it only on its first start and a
	# demo may be run again before the agent ever enrolled.
	if command -v sha256sum >/dev/null; then sum=(sha256sum); else sum=(shasum -a 256); fi
	cahash=sha256:$(sed '/-----/d' "$top/server/ca.pem" | base64 -d | "${sum[@]}" | cut -d' ' -f1)
	bin/mamori-agent enroll --server "$url" --token "$(cat "$top/server/enroll-token")" --ca-hash "$cahash" \
		--state-dir "$top/agent"
fi

# The demo policy: watch the demo folder, report everything else.
sed "s|@DEMO_FOLDER@|$top/顧客データ|" scripts/demo-policy.yaml |
	curl -sS --fail-with-body --cacert "$top/server/ca.pem" -X PUT -H "Authorization: Bearer $admin" \
		-H 'Content-Type: application/yaml' --data-binary @- "$url/api/v1/policies/default" >/dev/null

cat <<MSG

  Mamori demo / デモ
  dashboard:       $url/
  admin password:  $(cat "$top/server/initial-admin-password")   (user: admin)
  admin token:     $top/server/admin-token
  watched folder:  $top/顧客データ   (edit a file there: an access event appears within seconds)
  access log:      curl -s --cacert $top/server/ca.pem -H "Authorization: Bearer \$(cat $top/server/admin-token)" \\
                     '$url/api/v1/events?control=fileaccess'
  Ctrl-C stops the agent and the server. Server log: $top/server.log

MSG
bin/mamori-agent run --state-dir "$top/agent"
