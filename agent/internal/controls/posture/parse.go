package posture

// Pure parsers of what the probes read, for every OS, so that all of them
// are tested on any build host against the fixtures in testdata/.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ---- Linux ----

// rootDevice returns the major:minor and source of the "/" mount from
// /proc/self/mountinfo (the last "/" entry wins: later mounts hide earlier).
func rootDevice(mountinfo []byte) (majmin, source, fstype string, err error) {
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 25 1 253:1 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw
		f := strings.Fields(sc.Text())
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) || f[4] != "/" {
			continue
		}
		majmin, fstype, source = f[2], f[sep+1], f[sep+2]
	}
	if majmin == "" {
		return "", "", "", errors.New("no / mount in mountinfo")
	}
	return majmin, source, fstype, nil
}

// luksForRoot decides whether the block device majmin is on LUKS, walking
// device-mapper slaves (LVM on LUKS, LUKS on a partition) in sysfs (sys is
// the /sys tree). It returns the method ("luks1"/"luks2") or "" when the
// device is a plain disk or partition; an error when majmin is no block
// device at all (overlay, network or virtual file systems).
func luksForRoot(sys fs.FS, majmin string) (string, error) {
	blocks, err := fs.ReadDir(sys, "block")
	if err != nil {
		return "", fmt.Errorf("read /sys/block: %w", err)
	}
	for _, b := range blocks {
		name := b.Name()
		if devOf(sys, path.Join("block", name, "dev")) == majmin {
			return luksDM(sys, name, 0)
		}
		// Partitions live under their disk: /sys/block/sda/sda2/dev.
		subs, _ := fs.ReadDir(sys, path.Join("block", name))
		for _, s := range subs {
			if strings.HasPrefix(s.Name(), name) && devOf(sys, path.Join("block", name, s.Name(), "dev")) == majmin {
				return "", nil // a plain partition
			}
		}
	}
	return "", fmt.Errorf("%w: root device %s is not a block device in sysfs", errors.ErrUnsupported, majmin)
}

func devOf(sys fs.FS, p string) string {
	b, err := fs.ReadFile(sys, p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func luksDM(sys fs.FS, name string, depth int) (string, error) {
	if depth > 8 || !strings.HasPrefix(name, "dm-") {
		return "", nil
	}
	uuid := devOf(sys, path.Join("block", name, "dm", "uuid"))
	switch {
	case strings.HasPrefix(uuid, "CRYPT-LUKS2-"):
		return "luks2", nil
	case strings.HasPrefix(uuid, "CRYPT-LUKS1-"):
		return "luks1", nil
	}
	slaves, _ := fs.ReadDir(sys, path.Join("block", name, "slaves"))
	for _, s := range slaves {
		if m, err := luksDM(sys, s.Name(), depth+1); err != nil || m != "" {
			return m, err
		}
	}
	return "", nil
}

// parseNftRuleset reports whether `nft list ruleset` shows a filter on the
// input hook: a drop/reject policy or at least one rule in such a chain.
func parseNftRuleset(b []byte) (bool, string) {
	inInput, rules := false, 0
	for _, line := range strings.Split(string(b), "\n") {
		l := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(l, "chain "):
			inInput = false
		case strings.HasPrefix(l, "type filter hook input"):
			inInput = true
			if strings.Contains(l, "policy drop") || strings.Contains(l, "policy reject") {
				return true, "nftables input policy drop"
			}
		case inInput && l != "" && l != "}":
			rules++
		}
	}
	if rules > 0 {
		return true, fmt.Sprintf("nftables %d input rules", rules)
	}
	return false, "nftables has no input filter"
}

// parseIptablesSave reports whether `iptables-save` output filters INPUT.
func parseIptablesSave(b []byte) (bool, string) {
	rules := 0
	for _, line := range strings.Split(string(b), "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, ":INPUT DROP") || strings.HasPrefix(l, ":INPUT REJECT") {
			return true, "iptables INPUT policy DROP"
		}
		if strings.HasPrefix(l, "-A INPUT ") {
			rules++
		}
	}
	if rules > 0 {
		return true, fmt.Sprintf("iptables %d INPUT rules", rules)
	}
	return false, "iptables has no INPUT rules"
}

// parseUfwStatus reads `ufw status`.
func parseUfwStatus(b []byte) (on, known bool) {
	s := string(b)
	switch {
	case strings.Contains(s, "Status: active"):
		return true, true
	case strings.Contains(s, "Status: inactive"):
		return false, true
	}
	return false, false
}

// ---- Windows (WMI rows as the probe decodes them; fixtures are the same
// rows as PowerShell's Get-CimInstance | ConvertTo-Json prints them) ----

// encryptableVolume is a Win32_EncryptableVolume row.
type encryptableVolume struct {
	DriveLetter      string
	ProtectionStatus uint32 // 0 off, 1 on, 2 unknown (locked)
	VolumeType       uint32 // 0 OS, 1 fixed data, 2 removable data (Windows 8+; zero before)
}

// Win32_EncryptableVolume VolumeType of removable data volumes: USB sticks
// and disks are the media control's business.
const volumeRemovable = 2

// bitlockerVolumes decides over every fixed volume with a drive letter
// (personal data on an unencrypted D: is as exposed as on C:), naming the
// unencrypted ones. systemDrive is always checked: BitLocker's namespace
// lists every fixed volume, so a system drive missing from it is not
// encrypted. Volumes without a letter (recovery, system reserved) hold no
// user files and are skipped.
func bitlockerVolumes(vols []encryptableVolume, systemDrive string) (diskFact, error) {
	systemDrive = strings.ToUpper(systemDrive)
	var checked, off, locked []string
	seen := map[string]bool{}
	sawSystem := false
	for _, v := range vols {
		letter := strings.ToUpper(strings.TrimSpace(v.DriveLetter))
		if letter == "" || v.VolumeType == volumeRemovable || seen[letter] {
			continue
		}
		seen[letter] = true
		sawSystem = sawSystem || letter == systemDrive
		checked = append(checked, letter)
		switch v.ProtectionStatus {
		case 1:
		case 0:
			off = append(off, letter)
		default:
			locked = append(locked, letter)
		}
	}
	if !sawSystem {
		checked = append(checked, systemDrive)
		off = append(off, systemDrive)
	}
	sort.Strings(checked)
	sort.Strings(off)
	f := diskFact{Encrypted: len(off) == 0, Method: "bitlocker", Volume: strings.Join(checked, " "), Unencrypted: off}
	if len(vols) == 0 {
		f.Method = "" // no BitLocker volume at all
	}
	if len(off) == 0 && len(locked) > 0 {
		return diskFact{}, fmt.Errorf("bitlocker protection status unknown (locked?) for %s", strings.Join(locked, " "))
	}
	return f, nil
}

// antiVirusProduct is a root\SecurityCenter2 AntiVirusProduct row.
type antiVirusProduct struct {
	DisplayName  string `json:"displayName"`
	ProductState uint32 `json:"productState"`
	Timestamp    string `json:"timestamp"`
}

// decodeProductState reads SecurityCenter2's productState, 0xTTSSDD:
// product type, scanner state, definitions state. The scanner is on when
// the high nibble of SS is 1 (0x10 and 0x11 are both seen for "on", 0x00 and
// 0x01 for "off"); definitions are out of date when DD is 0x10. Microsoft
// does not document the layout; it has been stable since Windows Vista.
func decodeProductState(s uint32) (running, outdated bool) {
	return (s>>12)&0xf == 1, (s>>4)&0xf == 1
}

// mpComputerStatus is a root\Microsoft\Windows\Defender MSFT_MpComputerStatus row.
type mpComputerStatus struct {
	AMServiceEnabled              bool
	AntivirusEnabled              bool
	RealTimeProtectionEnabled     bool
	AntivirusSignatureLastUpdated time.Time
}

// antivirusFrom combines the Security Center products and Defender's own
// status: Security Center knows third-party products, Defender the exact
// signature time (Server SKUs have no Security Center).
func antivirusFrom(products []antiVirusProduct, mp *mpComputerStatus) (avFact, error) {
	var f avFact
	for _, p := range products {
		running, outdated := decodeProductState(p.ProductState)
		if f.Product == "" || running && !f.Running {
			f = avFact{Product: p.DisplayName, Running: running, Outdated: outdated}
		}
	}
	if mp != nil && mp.AMServiceEnabled {
		defender := f.Product == "" || strings.Contains(f.Product, "Defender")
		if defender {
			f.Product = "Windows Defender"
			f.Running = mp.AntivirusEnabled && mp.RealTimeProtectionEnabled
			f.Signatures = mp.AntivirusSignatureLastUpdated
		}
	}
	if f.Product == "" && products == nil && mp == nil {
		return f, errNotDetected
	}
	return f, nil
}

// quickFix is a Win32_QuickFixEngineering row.
type quickFix struct {
	HotFixID    string
	InstalledOn string // "11/12/2026" (en-US), "2026/11/12" (ja-JP) or a hex FILETIME
}

// newestHotfix parses InstalledOn in the forms Windows writes it.
func newestHotfix(fixes []quickFix) (time.Time, string) {
	var best time.Time
	var id string
	for _, f := range fixes {
		t, ok := parseInstalledOn(f.InstalledOn)
		if ok && t.After(best) {
			best, id = t, f.HotFixID
		}
	}
	return best, id
}

func parseInstalledOn(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if len(s) == 16 && !strings.ContainsAny(s, "/-") { // hex FILETIME seen on some builds
		if v, err := strconv.ParseUint(s, 16, 64); err == nil {
			return time.Unix(0, int64(v-116444736000000000)*100).UTC(), true
		}
	}
	for _, layout := range []string{"1/2/2006", "2006/01/02", "2006/1/2", "2006-01-02", "02.01.2006"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// Firewall profiles as the local policy names them, with the Group Policy
// keys (under SOFTWARE\Policies\Microsoft\WindowsFirewall) that override
// each, first found wins: Windows Firewall with Advanced Security GPOs
// write PrivateProfile for the private profile, the older Windows Firewall
// administrative template StandardProfile (MS-GPFAS 2.2).
var firewallProfileNames = []struct {
	local string
	gpo   []string
}{
	{"DomainProfile", []string{"DomainProfile"}},
	{"StandardProfile", []string{"PrivateProfile", "StandardProfile"}},
	{"PublicProfile", []string{"PublicProfile"}},
}

// firewallEffective combines EnableFirewall of the local policy and of
// Group Policy, both keyed by the local profile name: a GPO value, when
// set, wins (the MS-FASP merge law for FW_PROFILE_CONFIG_ENABLE_FW). The
// firewall is on only if every profile is on.
func firewallEffective(local, gpo map[string]uint32) firewallFact {
	on := len(local)+len(gpo) > 0
	var parts []string
	for _, p := range firewallProfileNames {
		v, ok := local[p.local]
		src := ""
		if g, gok := gpo[p.local]; gok {
			v, ok, src = g, true, "(GPO)"
		}
		state := "on"
		if !ok || v == 0 {
			state, on = "off", false
		}
		parts = append(parts, strings.TrimSuffix(p.local, "Profile")+"="+state+src)
	}
	return firewallFact{On: on, Detail: strings.Join(parts, " ")}
}

// decodeCIMJSON reads PowerShell ConvertTo-Json output (one object or an
// array) into rows: the fixtures' form.
func decodeCIMJSON[T any](b []byte) ([]T, error) {
	b = bytes.TrimSpace(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")))
	if len(b) > 0 && b[0] == '{' {
		var one T
		if err := json.Unmarshal(b, &one); err != nil {
			return nil, err
		}
		return []T{one}, nil
	}
	var rows []T
	err := json.Unmarshal(b, &rows)
	return rows, err
}

// ---- macOS ----

// parseFdesetup reads `fdesetup status`.
func parseFdesetup(b []byte) (diskFact, error) {
	s := string(b)
	switch {
	case strings.Contains(s, "FileVault is On"):
		return diskFact{Encrypted: true, Method: "filevault", Volume: "/"}, nil
	case strings.Contains(s, "FileVault is Off"):
		return diskFact{Encrypted: false, Method: "filevault", Volume: "/"}, nil
	}
	return diskFact{}, fmt.Errorf("unrecognised fdesetup output %q", firstLine(s))
}

var stateRE = regexp.MustCompile(`State = (\d+)`)

// parseSocketfilterfw reads `socketfilterfw --getglobalstate`: State 1
// (on) or 2 (block all) is on.
func parseSocketfilterfw(b []byte) (firewallFact, error) {
	m := stateRE.FindSubmatch(b)
	if m == nil {
		switch {
		case bytes.Contains(b, []byte("is enabled")):
			return firewallFact{On: true, Detail: "application firewall enabled"}, nil
		case bytes.Contains(b, []byte("is disabled")):
			return firewallFact{On: false, Detail: "application firewall disabled"}, nil
		}
		return firewallFact{}, fmt.Errorf("unrecognised socketfilterfw output %q", firstLine(string(b)))
	}
	n, _ := strconv.Atoi(string(m[1]))
	return firewallFact{On: n >= 1, Detail: "application firewall state " + string(m[1])}, nil
}

var historyDateRE = regexp.MustCompile(`(\d{2}/\d{2}/\d{4}, \d{2}:\d{2}:\d{2})`)

// parseSoftwareUpdateHistory reads `softwareupdate --history` and returns
// the newest install time (dates are MM/DD/YYYY, local time).
func parseSoftwareUpdateHistory(b []byte, loc *time.Location) time.Time {
	var best time.Time
	for _, m := range historyDateRE.FindAllSubmatch(b, -1) {
		if t, err := time.ParseInLocation("01/02/2006, 15:04:05", string(m[1]), loc); err == nil && t.After(best) {
			best = t
		}
	}
	return best
}

var plistVersionRE = regexp.MustCompile(`<key>CFBundleShortVersionString</key>\s*<string>([^<]+)</string>`)

// parseXProtectVersion reads the version from XProtect's Info.plist.
func parseXProtectVersion(b []byte) string {
	if m := plistVersionRE.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}
