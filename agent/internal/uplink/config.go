package uplink

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FileConfig is the installed configuration in the state dir: what an
// installer (MSI properties, /etc/mamori/agent.env) or `mamori-agent
// configure` gave. The service enrolls from it at start; the token is
// removed once enrolled.
const FileConfig = "config.json"

// MaxServers bounds the server list (SERVER property, --server).
const MaxServers = 16

// Config is the installed configuration.
type Config struct {
	Servers    []string `json:"servers"`
	Token      string   `json:"token,omitempty"`
	CAHash     string   `json:"ca_hash"`
	Department string   `json:"department,omitempty"`
	Proxy      string   `json:"proxy,omitempty"`
}

// ErrNoConfig is returned by LoadConfig when no installed config exists.
var ErrNoConfig = errors.New("uplink: no installed config")

// ParseServers splits a comma-separated list of server URLs, checks each
// (https, host, no path) and drops duplicates, keeping the order: the agent
// tries them in that order.
func ParseServers(list string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for s := range strings.SplitSeq(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		u, err := CheckServerURL(s)
		if err != nil {
			return nil, err
		}
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("uplink: no server URL given")
	}
	if len(out) > MaxServers {
		return nil, fmt.Errorf("uplink: %d server URLs; at most %d", len(out), MaxServers)
	}
	return out, nil
}

// Check validates c and normalises it in place. A config without a token
// is valid (an enrolled PC's, or an upgrade's that only changes servers).
func (c *Config) Check() error {
	servers, err := ParseServers(strings.Join(c.Servers, ","))
	if err != nil {
		return err
	}
	c.Servers = servers
	h, err := ParseCAHash(c.CAHash)
	if err != nil {
		return err
	}
	c.CAHash = h
	// Pasted values carry spaces and a Windows file's "\r".
	c.Token = strings.TrimSpace(c.Token)
	c.Department = strings.TrimSpace(c.Department)
	c.Proxy = strings.TrimSpace(c.Proxy)
	if strings.ContainsAny(c.Token, " \t\r\n") {
		return errors.New("uplink: token contains white space")
	}
	if len(c.Department) > 200 {
		return errors.New("uplink: department longer than 200 bytes")
	}
	if c.Proxy != "" {
		if _, err := ParseProxy(c.Proxy); err != nil {
			return err
		}
	}
	return nil
}

// LoadConfig reads and checks config.json from dir.
func LoadConfig(dir string) (Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, FileConfig))
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, ErrNoConfig
	}
	if err != nil {
		return Config{}, fmt.Errorf("uplink: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("uplink: %s: %w", FileConfig, err)
	}
	if err := c.Check(); err != nil {
		return Config{}, fmt.Errorf("uplink: %s: %w", FileConfig, err)
	}
	return c, nil
}

// SaveConfig checks c and writes it privately into dir (created protected).
// Nothing is written when c is invalid.
func SaveConfig(dir string, c Config) error {
	if err := c.Check(); err != nil {
		return err
	}
	if err := MakeStateDir(dir); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	return WriteFileAtomic(filepath.Join(dir, FileConfig), append(b, '\n'))
}

// EnrollFromConfig enrolls with the installed config, trying each server in
// order; the first that certifies us wins. It returns every server's error
// when none did. The caller retries with backoff.
func EnrollFromConfig(ctx context.Context, dir string, c Config) (State, error) {
	if c.Token == "" {
		return State{}, fmt.Errorf("uplink: %s has no token: enroll with mamori-agent enroll, or reinstall with TOKEN", FileConfig)
	}
	var errs []error
	for _, s := range c.Servers {
		st, err := Enroll(ctx, EnrollOptions{Server: s, Token: c.Token, CAHash: c.CAHash, StateDir: dir,
			Department: c.Department, Proxy: c.Proxy})
		if err == nil {
			return st, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return State{}, errors.Join(errs...)
}

// ForgetToken removes the token from config.json once enrolled: it is a
// secret with a use count, and the PC does not need it again.
func ForgetToken(dir string) error {
	c, err := LoadConfig(dir)
	if errors.Is(err, ErrNoConfig) || (err == nil && c.Token == "") {
		return nil
	}
	if err != nil {
		return err
	}
	c.Token = ""
	return SaveConfig(dir, c)
}

// ServersOf is the server list of an enrolled agent: the installed config's,
// in its order, with the enrolled server added last when the list lacks it;
// just the enrolled server when there is no config. The enrolled server is
// the last resort, tried only after every configured one failed: a mistyped
// configure or policy list then still reaches a server that can push a
// corrected list, and the pinned CA stops a reused host name.
func ServersOf(dir string, st State) ([]string, error) {
	c, err := LoadConfig(dir)
	if errors.Is(err, ErrNoConfig) {
		return []string{st.Server}, nil
	}
	if err != nil {
		return nil, err
	}
	if !slices.Contains(c.Servers, st.Server) {
		c.Servers = append(c.Servers, st.Server)
	}
	return c.Servers, nil
}

// SaveServers records a server list pushed by the policy in the installed
// config (created with the pinned CA's hash when the PC was enrolled by
// hand), so the list holds across restarts and offline boots.
func SaveServers(dir string, servers []string) error {
	c, err := LoadConfig(dir)
	if errors.Is(err, ErrNoConfig) {
		b, rerr := os.ReadFile(filepath.Join(dir, FileCA))
		if rerr != nil {
			return fmt.Errorf("uplink: %w", rerr)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return fmt.Errorf("uplink: %s holds no certificate", FileCA)
		}
		c, err = Config{CAHash: Fingerprint(blk.Bytes)}, nil
	}
	if err != nil {
		return err
	}
	if slices.Equal(c.Servers, servers) {
		return nil
	}
	c.Servers = servers
	return SaveConfig(dir, c)
}
