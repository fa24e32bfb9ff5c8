package host

import (
	"context"
	"encoding/json"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	gonet "github.com/shirou/gopsutil/v3/net"

	"github.com/mamori/mamori/shared/wire"
)

func TestCollect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inv, err := Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inventory: %+v", inv)
	if inv.Hostname == "" || inv.OS != runtime.GOOS || inv.Arch != runtime.GOARCH {
		t.Fatalf("identity: %+v", inv)
	}
	if inv.CPUs < 1 || inv.MemTotal < 64<<20 {
		t.Fatalf("cpus %d, memory %d", inv.CPUs, inv.MemTotal)
	}
	if inv.BootTime.IsZero() || inv.BootTime.After(time.Now()) || inv.UptimeSeconds == 0 {
		t.Fatalf("boot %v, uptime %d", inv.BootTime, inv.UptimeSeconds)
	}
	if d := time.Since(inv.BootTime) - time.Duration(inv.UptimeSeconds)*time.Second; d < -time.Minute || d > time.Minute {
		t.Fatalf("boot time %v and uptime %ds disagree by %v", inv.BootTime, inv.UptimeSeconds, d)
	}
	if runtime.GOOS == "linux" && (inv.Platform == "" || inv.KernelVersion == "") {
		t.Fatalf("platform %q kernel %q", inv.Platform, inv.KernelVersion)
	}
	for _, s := range inv.IPs {
		ip := net.ParseIP(s)
		if ip == nil || ip.IsLoopback() {
			t.Fatalf("bad ip %q in %v", s, inv.IPs)
		}
	}
	for _, m := range inv.MACs {
		if _, err := net.ParseMAC(m); err != nil {
			t.Fatalf("bad mac %q", m)
		}
	}
	if inv.Users == nil {
		t.Fatal("users must be an empty list, not null")
	}
	if len(inv.Users) == 0 {
		t.Log("no logged-on users here (sandbox without utmp sessions, or Wine without WTS): not asserted")
	}
	for _, u := range inv.Users {
		if u.Name == "" {
			t.Fatalf("user without name: %+v", u)
		}
	}
	b, err := json.Marshal(inv)
	if err != nil || !strings.Contains(string(b), `"hostname":`) {
		t.Fatalf("json %s %v", b, err)
	}
}

func TestAddresses(t *testing.T) {
	ifs := gonet.InterfaceStatList{
		{Name: "lo", Flags: []string{"up", "loopback"}, HardwareAddr: "", Addrs: gonet.InterfaceAddrList{{Addr: "127.0.0.1/8"}, {Addr: "::1/128"}}},
		{Name: "eth0", Flags: []string{"up", "broadcast"}, HardwareAddr: "52:54:00:12:34:56",
			Addrs: gonet.InterfaceAddrList{{Addr: "192.168.10.5/24"}, {Addr: "fe80::5054:ff:fe12:3456/64"}, {Addr: "2001:db8::5/64"}}},
		{Name: "イーサネット 2", Flags: []string{"broadcast"}, HardwareAddr: "00:15:5d:01:02:03", Addrs: gonet.InterfaceAddrList{{Addr: "169.254.3.4/16"}}},
		{Name: "dup", Flags: []string{"up"}, HardwareAddr: "52:54:00:12:34:56", Addrs: gonet.InterfaceAddrList{{Addr: "10.0.0.7"}}},
	}
	ips, macs := addresses(ifs)
	if got, want := strings.Join(ips, ","), "10.0.0.7,192.168.10.5,2001:db8::5"; got != want {
		t.Fatalf("ips %s, want %s", got, want)
	}
	if got, want := strings.Join(macs, ","), "52:54:00:12:34:56"; got != want {
		t.Fatalf("macs %s, want %s", got, want)
	}
}

func TestSelf(t *testing.T) {
	ctx := context.Background()
	first, err := Self(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Burn some CPU so the second figure has something to measure.
	deadline := time.Now().Add(200 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	second, err := Self(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("self: %+v then %+v (%d loops)", first, second, x)
	if second.PID == 0 || second.RSS < 1<<20 || second.Goroutines < 1 {
		t.Fatalf("self %+v", second)
	}
	if second.CPUPercent <= 0 || second.CPUPercent > float64(runtime.NumCPU())*100+5 {
		t.Fatalf("cpu percent %v after a busy loop", second.CPUPercent)
	}
}

func TestOSVersionLine(t *testing.T) {
	for _, c := range [][4]string{
		{"debian", "12.7", "6.1.0", "debian 12.7"},
		{"Microsoft Windows 11 Pro", "10.0.22631 Build 22631", "", "Microsoft Windows 11 Pro 10.0.22631 Build 22631"},
		{"", "", "6.18.4", "6.18.4"},
		{"", "", "", ""},
	} {
		if got := wire.OSVersionLine(c[0], c[1], c[2]); got != c[3] {
			t.Errorf("OSVersionLine(%q, %q, %q) = %q, want %q", c[0], c[1], c[2], got, c[3])
		}
	}
	if runtime.GOOS == "linux" && OSVersion(context.Background()) == "" {
		t.Error("no OS version on this machine")
	}
}

// Only the people at the machine count as who plugged in a stick: the
// Windows console session, local ttys and X displays; not RDP or ssh.
func TestLocalNames(t *testing.T) {
	win := []User{{Name: "tanaka", Domain: "CORP", Terminal: "Console", Session: 1},
		{Name: "admin", Domain: "CORP", Terminal: "RDP-Tcp#0", Session: 2}, {Name: "tanaka", Domain: "CORP", Terminal: "Console"}}
	if got := localNames(win, "windows"); len(got) != 1 || got[0] != `CORP\tanaka` {
		t.Errorf("windows: %q", got)
	}
	wine := []User{{Name: "user", Domain: "WINEPC"}}
	if got := localNames(wine, "windows"); len(got) != 1 || got[0] != `WINEPC\user` {
		t.Errorf("shell owners: %q", got)
	}
	unix := []User{{Name: "yamada", Terminal: "tty1"}, {Name: "sato", Terminal: "pts/0", Host: "10.0.0.5"},
		{Name: "suzuki", Terminal: "pts/1", Host: ":0"}, {Name: "yamada", Terminal: "pts/2"}}
	if got := localNames(unix, "linux"); len(got) != 2 || got[0] != "suzuki" || got[1] != "yamada" {
		t.Errorf("linux: %q", got)
	}
}
