// Package host collects the agent's inventory of the machine it runs on
// (name, OS, addresses, logged-on users, CPU and memory) and the agent's own
// resource use, for the agent.inventory and agent.heartbeat events.
//
// Per-OS files must define:
//
//	func loggedOnUsers(ctx context.Context) ([]User, error)
//
// gopsutil covers Linux and macOS (utmp); on Windows it has no Users(), so
// users_windows.go asks the Terminal Services API (WTS) instead.
package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	gohost "github.com/shirou/gopsutil/v3/host"
	"github.com/shirou/gopsutil/v3/mem"
	gonet "github.com/shirou/gopsutil/v3/net"
	"github.com/shirou/gopsutil/v3/process"

	"github.com/mamori/mamori/shared/wire"
)

// Inventory describes the machine. Fields gopsutil cannot fill on a system
// stay empty; Errors says which parts failed and why.
type Inventory struct {
	Hostname        string    `json:"hostname"`
	OS              string    `json:"os"`               // GOOS: windows, linux, darwin
	Platform        string    `json:"platform"`         // e.g. "Microsoft Windows 11 Pro", "debian"
	PlatformFamily  string    `json:"platform_family"`  // e.g. "Standalone Workstation", "debian"
	PlatformVersion string    `json:"platform_version"` // e.g. "10.0.22631 Build 22631", "12.7"
	KernelVersion   string    `json:"kernel_version"`
	Arch            string    `json:"arch"` // GOARCH of the agent
	KernelArch      string    `json:"kernel_arch,omitempty"`
	UptimeSeconds   uint64    `json:"uptime_s"`
	BootTime        time.Time `json:"boot_time"`
	IPs             []string  `json:"ips,omitempty"`  // non-loopback, non-link-local unicast addresses
	MACs            []string  `json:"macs,omitempty"` // of interfaces that are up and not loopback
	Users           []User    `json:"users"`
	CPUs            int       `json:"cpus"`
	MemTotal        uint64    `json:"mem_total"` // bytes
	Errors          []string  `json:"errors,omitempty"`
}

// User is one logged-on session.
type User struct {
	Name     string    `json:"name"`
	Domain   string    `json:"domain,omitempty"`   // Windows domain or computer name
	Terminal string    `json:"terminal,omitempty"` // tty, or the WTS station name ("Console", "RDP-Tcp#0")
	Session  uint32    `json:"session,omitempty"`  // Windows session id
	Host     string    `json:"host,omitempty"`     // remote host for ssh logins
	Started  time.Time `json:"started,omitzero"`
}

// Collect gathers the inventory. A part that fails is recorded in
// Inventory.Errors and the rest is still returned; the error is non-nil
// only when nothing useful could be read (no host info at all).
func Collect(ctx context.Context) (Inventory, error) {
	inv := Inventory{OS: runtime.GOOS, Arch: runtime.GOARCH, Users: []User{}}
	fail := func(part string, err error) { inv.Errors = append(inv.Errors, part+": "+err.Error()) }

	hi, err := gohost.InfoWithContext(ctx)
	if hi == nil {
		if err == nil {
			err = errors.New("no host information")
		}
		return inv, fmt.Errorf("host: collect: %w", err)
	}
	if err != nil {
		fail("info", err) // partial: gopsutil fills what it could
	}
	inv.Hostname = hi.Hostname
	inv.Platform, inv.PlatformFamily, inv.PlatformVersion = hi.Platform, hi.PlatformFamily, hi.PlatformVersion
	inv.KernelVersion, inv.KernelArch = hi.KernelVersion, hi.KernelArch
	inv.UptimeSeconds = hi.Uptime
	if hi.BootTime > 0 {
		inv.BootTime = time.Unix(int64(hi.BootTime), 0).UTC()
	}
	if inv.Hostname == "" {
		inv.Hostname, _ = os.Hostname()
	}

	if ifs, err := gonet.InterfacesWithContext(ctx); err != nil {
		fail("interfaces", err)
	} else {
		inv.IPs, inv.MACs = addresses(ifs)
	}
	if n, err := cpu.CountsWithContext(ctx, true); err != nil || n == 0 {
		inv.CPUs = runtime.NumCPU()
	} else {
		inv.CPUs = n
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		fail("memory", err)
	} else {
		inv.MemTotal = vm.Total
	}
	if us, err := loggedOnUsers(ctx); err != nil {
		fail("users", err)
	} else if us != nil {
		inv.Users = us
	}
	return inv, nil
}

// addresses picks the addresses worth showing an admin: unicast, not
// loopback, not link-local; MACs of interfaces that are up.
func addresses(ifs gonet.InterfaceStatList) (ips, macs []string) {
	seenMAC := map[string]bool{}
	for _, i := range ifs {
		loop, up := false, false
		for _, f := range i.Flags {
			switch f {
			case "loopback":
				loop = true
			case "up":
				up = true
			}
		}
		if loop {
			continue
		}
		for _, a := range i.Addrs {
			ip, _, err := net.ParseCIDR(a.Addr)
			if err != nil {
				ip = net.ParseIP(a.Addr)
			}
			if ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() {
				continue
			}
			ips = append(ips, ip.String())
		}
		if up && i.HardwareAddr != "" && i.HardwareAddr != "00:00:00:00:00:00" && !seenMAC[i.HardwareAddr] {
			seenMAC[i.HardwareAddr] = true
			macs = append(macs, i.HardwareAddr)
		}
	}
	sort.Strings(ips)
	sort.Strings(macs)
	return ips, macs
}

// SelfUsage is the agent's own footprint, for heartbeats.
type SelfUsage struct {
	PID        int32   `json:"pid"`
	CPUPercent float64 `json:"cpu_percent"` // of one core, since the previous Self call (or process start)
	RSS        uint64  `json:"rss"`         // bytes
	Goroutines int     `json:"goroutines"`
}

var self struct {
	mu   sync.Mutex
	proc *process.Process
	cpu  float64 // user+system seconds at the last call
	at   time.Time
}

// Self reports the agent process's CPU use since the last call and its
// resident memory. The first call measures since the process started.
func Self(ctx context.Context) (SelfUsage, error) {
	self.mu.Lock()
	defer self.mu.Unlock()
	if self.proc == nil {
		p, err := process.NewProcessWithContext(ctx, int32(os.Getpid()))
		if err != nil {
			return SelfUsage{}, fmt.Errorf("host: self: %w", err)
		}
		self.proc = p
		if ms, err := p.CreateTimeWithContext(ctx); err == nil {
			self.at = time.UnixMilli(ms)
		}
	}
	u := SelfUsage{PID: self.proc.Pid, Goroutines: runtime.NumGoroutine()}
	t, err := self.proc.TimesWithContext(ctx)
	if err != nil {
		return u, fmt.Errorf("host: self cpu: %w", err)
	}
	now := time.Now()
	busy := t.User + t.System
	if wall := now.Sub(self.at).Seconds(); !self.at.IsZero() && wall > 0 {
		u.CPUPercent = max(0, (busy-self.cpu)/wall*100)
	}
	self.cpu, self.at = busy, now
	mi, err := self.proc.MemoryInfoWithContext(ctx)
	if err != nil {
		return u, fmt.Errorf("host: self memory: %w", err)
	}
	u.RSS = mi.RSS
	return u, nil
}

// OSVersion names the operating system and its version in one line
// (wire.OSVersionLine), as the server's agent list shows it.
func OSVersion(ctx context.Context) string {
	hi, _ := gohost.InfoWithContext(ctx)
	if hi == nil {
		return ""
	}
	return wire.OSVersionLine(hi.Platform, hi.PlatformVersion, hi.KernelVersion)
}

// LocalUsers names the users logged on at the machine itself, not over
// the network: the people who could have plugged in a USB stick. Windows:
// the console session (DOMAIN\user); elsewhere utmp logins from no remote
// host (a tty, or an X display such as ":0"). Sorted, without repeats.
func LocalUsers(ctx context.Context) ([]string, error) {
	us, err := loggedOnUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("host: users: %w", err)
	}
	return localNames(us, runtime.GOOS), nil
}

func localNames(us []User, goos string) []string {
	seen := map[string]bool{}
	var out []string
	for _, u := range us {
		name := u.Name
		if goos == "windows" {
			// WTS names the physical session's station "Console"; RDP
			// sessions are RDP-Tcp#N. Without WTS (Wine) the shell
			// owners come with no station.
			if u.Terminal != "" && !strings.EqualFold(u.Terminal, "Console") {
				continue
			}
			if u.Domain != "" {
				name = u.Domain + `\` + u.Name
			}
		} else if u.Host != "" && !strings.HasPrefix(u.Host, ":") {
			continue // ssh and other remote logins
		}
		if name != "" && !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
