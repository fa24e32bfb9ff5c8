#!/usr/bin/env bash
# make dist: every release artefact into dist/, built on Linux.
#   mamori-agent.msi, mamori-server.msi          (wixl, Debian's msitools)
#   mamori-agent_V_amd64.deb, mamori-agent-V.x86_64.rpm, same for the server (nfpm, a Go tool in go.mod)
#   mamori-{agent,server}-{linux,windows}-amd64.cdx.json  (CycloneDX SBOM of each shipped binary)
#   SHA256SUMS
# With SIGN_CERT and SIGN_KEY (PEM; SIGN_PASS for an encrypted key, SIGN_TS a
# timestamp URL) the .exe files and MSIs are Authenticode-signed with
# osslsigncode, and every signature is verified against SIGN_CERT.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${DIST:-dist}
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
commit=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
date=${BUILD_DATE:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}
# MSI and package versions must be numeric: v1.2.3-4-gabc -> 1.2.3; no tag -> 0.0.<commit count>.
if [[ $version =~ ^v?([0-9]+)\.([0-9]+)\.([0-9]+) ]]; then
	num=${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.${BASH_REMATCH[3]}
else
	num=0.0.$(git rev-list --count HEAD 2>/dev/null || echo 0)
fi
need() { command -v "$1" >/dev/null || { echo "dist: $1 not found (Debian package: $2)" >&2; exit 1; }; }
need wixl wixl
need msibuild msitools
if [ -n "${SIGN_CERT:-}${SIGN_KEY:-}" ]; then
	[ -f "${SIGN_CERT:-}" ] && [ -f "${SIGN_KEY:-}" ] || { echo "dist: SIGN_CERT and SIGN_KEY must both name PEM files" >&2; exit 1; }
	need osslsigncode osslsigncode
fi

rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd) # DIST may be anywhere: the packaging steps below run in other folders
build=$out/build
mkdir -p "$build/linux-amd64" "$build/windows-amd64"
ldflags="-s -w -X main.version=$version -X main.commit=$commit -X main.date=$date"
for prog in agent server; do
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags "$ldflags" -o "$build/linux-amd64/mamori-$prog" "./$prog"
	GOOS=windows GOARCH=amd64 go build -trimpath -ldflags "$ldflags" -o "$build/windows-amd64/mamori-$prog.exe" "./$prog"
done

sign() { # sign FILE DESCRIPTION: in place, then verify
	[ -n "${SIGN_CERT:-}" ] || return 0
	local f=$1 ts=()
	[ -n "${SIGN_TS:-}" ] && ts=(-ts "$SIGN_TS")
	local pass=()
	[ -n "${SIGN_PASS:-}" ] && pass=(-pass "$SIGN_PASS")
	osslsigncode sign -certs "$SIGN_CERT" -key "$SIGN_KEY" "${pass[@]}" -h sha256 -n "$2" \
		-i https://github.com/mamori/mamori "${ts[@]}" -in "$f" -out "$f.signed" >/dev/null
	mv "$f.signed" "$f"
	grep -q "Signature verification: ok" <<<"$(osslsigncode verify -CAfile "$SIGN_CERT" -in "$f" 2>&1)" ||
		{ echo "dist: signature of $f does not verify" >&2; osslsigncode verify -CAfile "$SIGN_CERT" -in "$f" >&2; exit 1; }
	echo "signed and verified: $f"
}
sign "$build/windows-amd64/mamori-agent.exe" "Mamori Agent"
sign "$build/windows-amd64/mamori-server.exe" "Mamori Server"

# wixl drops HideTarget="yes": set the flag (0x2000) in the CustomAction
# table of each action the .wxs marks, so Windows Installer keeps their
# command lines (ConfigureAgent's holds TOKEN) out of the MSI log.
hide_targets() { # hide_targets MSI (its .wxs next to it)
	local a t
	for a in $(grep -o '<CustomAction Id="[A-Za-z]*"[^>]*HideTarget="yes"' "${1%.msi}.wxs" | sed 's/.*Id="\([A-Za-z]*\)".*/\1/'); do
		t=$(msiinfo export "$1" CustomAction | awk -F'\t' -v a="$a" '$1 == a { print $2 }')
		[ -n "$t" ] || { echo "dist: $1: no custom action $a" >&2; exit 1; }
		msibuild "$1" -q "UPDATE \`CustomAction\` SET \`Type\` = $((t | 0x2000)) WHERE \`Action\` = '$a'"
	done
}

# wixl refuses absolute Source paths: build next to the exe.
for prog in agent server; do
	cp "installers/windows/mamori-$prog.wxs" "$build/windows-amd64/"
	(cd "$build/windows-amd64" && wixl -a x64 -D Version="$num" -o "mamori-$prog.msi" "mamori-$prog.wxs")
	hide_targets "$build/windows-amd64/mamori-$prog.msi"
	mv "$build/windows-amd64/mamori-$prog.msi" "$out/"
	sign "$out/mamori-$prog.msi" "Mamori ${prog^}"
done

# go tool finds nfpm through this module's go.mod; the staging folder is outside it.
nfpm=$(go tool -n nfpm)
for prog in agent server; do
	stage=$build/nfpm-$prog
	mkdir -p "$stage"
	cp "$build/linux-amd64/mamori-$prog" installers/linux/mamori-$prog.service "installers/linux/$prog.env.example" \
		installers/linux/$prog-postinst.sh installers/linux/$prog-prerm.sh installers/linux/nfpm-$prog.yaml "$stage/"
	for pk in deb rpm; do
		(cd "$stage" && NFPM_ARCH=amd64 NFPM_VERSION=$num "$nfpm" package --config nfpm-$prog.yaml --packager $pk --target "$out/" >/dev/null)
	done
done

for prog in agent server; do
	go tool cyclonedx-gomod bin -json -version "v$num" -output "$out/mamori-$prog-linux-amd64.cdx.json" "$build/linux-amd64/mamori-$prog"
	go tool cyclonedx-gomod bin -json -version "v$num" -output "$out/mamori-$prog-windows-amd64.cdx.json" "$build/windows-amd64/mamori-$prog.exe"
done
cp "$build/windows-amd64/mamori-agent.exe" "$build/windows-amd64/mamori-server.exe" "$out/"
rm -rf "$build"
(cd "$out" && sha256sum -- * > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
echo "dist: $version ($num) in $out/:"
ls -l "$out"
