package screenlock

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	"github.com/mamori/mamori/agent/internal/controls"
)

// Registry paths the control reads and writes.
const (
	machinePath    = `SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System`
	userPolicyPath = `Software\Policies\Microsoft\Windows\Control Panel\Desktop`
	userOwnPath    = `Control Panel\Desktop`
)

// winProbe reads HKLM and the loaded user hives under HKU. Tests point
// both roots at a scratch key under HKCU.
type winProbe struct {
	machineRoot registry.Key
	machinePath string // key holding InactivityTimeoutSecs
	usersRoot   registry.Key
	usersPath   string // key whose subkeys are SIDs ("" = the root itself)
}

func newProbe(controls.Env) probe {
	return &winProbe{machineRoot: registry.LOCAL_MACHINE, machinePath: machinePath, usersRoot: registry.USERS}
}

// readValue reads a REG_SZ or REG_DWORD value as text.
func readValue(k registry.Key, name string) (regValue, error) {
	s, _, err := k.GetStringValue(name)
	if errors.Is(err, registry.ErrUnexpectedType) {
		var n uint64
		n, _, err = k.GetIntegerValue(name)
		s = strconv.FormatUint(n, 10)
	}
	if errors.Is(err, registry.ErrNotExist) {
		return regValue{}, nil
	}
	if err != nil {
		return regValue{}, err
	}
	return regValue{s: s, ok: true}, nil
}

// readValues reads the screen-saver values of one key; a missing key has none.
func readValues(root registry.Key, path string) (map[string]regValue, error) {
	out := map[string]regValue{}
	k, err := registry.OpenKey(root, path, registry.QUERY_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("screenlock: open %s: %w", path, err)
	}
	defer k.Close()
	for _, name := range []string{valActive, valSecure, valTimeout} {
		v, err := readValue(k, name)
		if err != nil {
			return nil, fmt.Errorf("screenlock: %s\\%s: %w", path, name, err)
		}
		out[name] = v
	}
	return out, nil
}

func (p *winProbe) userKey(sid, sub string) string {
	if p.usersPath == "" {
		return sid + `\` + sub
	}
	return p.usersPath + `\` + sid + `\` + sub
}

func (p *winProbe) read(ctx context.Context) ([]Target, error) {
	var mv regValue
	k, err := registry.OpenKey(p.machineRoot, p.machinePath, registry.QUERY_VALUE)
	switch {
	case err == nil:
		mv, err = readValue(k, valMachine)
		k.Close()
		if err != nil {
			return nil, fmt.Errorf("screenlock: %s: %w", valMachine, err)
		}
	case !errors.Is(err, registry.ErrNotExist):
		return nil, fmt.Errorf("screenlock: open %s: %w", p.machinePath, err)
	}
	ts := []Target{winMachineTarget(mv)}
	uk, err := registry.OpenKey(p.usersRoot, p.usersPath, registry.ENUMERATE_SUB_KEYS)
	if err != nil {
		return nil, fmt.Errorf("screenlock: open user hives: %w", err)
	}
	sids, err := uk.ReadSubKeyNames(-1)
	uk.Close()
	if err != nil {
		return nil, fmt.Errorf("screenlock: list user hives: %w", err)
	}
	for _, sid := range sids {
		if !isUserSID(sid) {
			continue
		}
		pol, err := readValues(p.usersRoot, p.userKey(sid, userPolicyPath))
		if err != nil {
			return nil, err
		}
		own, err := readValues(p.usersRoot, p.userKey(sid, userOwnPath))
		if err != nil {
			return nil, err
		}
		ts = append(ts, winUserTarget(sid, accountName(sid), pol, own))
	}
	return ts, nil
}

// accountName resolves a SID to DOMAIN\user, or "" when it cannot.
func accountName(sid string) string {
	s, err := windows.StringToSid(sid)
	if err != nil {
		return ""
	}
	user, domain, _, err := s.LookupAccount("")
	if err != nil {
		return ""
	}
	if domain == "" {
		return user
	}
	return domain + `\` + user
}

// enforce writes InactivityTimeoutSecs for the machine target and the
// per-user policy values for user targets.
func (p *winProbe) enforce(ctx context.Context, w Want, ts []Target) ([]Applied, error) {
	secs := uint32(w.MaxIdle.Seconds())
	var out []Applied
	for _, t := range ts {
		switch t.Scope {
		case ScopeMachine:
			k, _, err := registry.CreateKey(p.machineRoot, p.machinePath, registry.SET_VALUE)
			if err != nil {
				return out, fmt.Errorf("screenlock: open %s for writing: %w", p.machinePath, err)
			}
			err = k.SetDWordValue(valMachine, secs)
			k.Close()
			if err != nil {
				return out, fmt.Errorf("screenlock: set %s: %w", valMachine, err)
			}
			out = append(out, Applied{Target: t, Set: map[string]string{valMachine: strconv.FormatUint(uint64(secs), 10)}})
		case ScopeUser:
			path := p.userKey(t.ID, userPolicyPath)
			k, _, err := registry.CreateKey(p.usersRoot, path, registry.SET_VALUE)
			if err != nil {
				return out, fmt.Errorf("screenlock: open %s for writing: %w", path, err)
			}
			set := map[string]string{valActive: "1", valSecure: "1", valTimeout: strconv.FormatUint(uint64(secs), 10)}
			for _, name := range []string{valActive, valSecure, valTimeout} {
				if err = k.SetStringValue(name, set[name]); err != nil {
					break
				}
			}
			k.Close()
			if err != nil {
				return out, fmt.Errorf("screenlock: set %s: %w", path, err)
			}
			out = append(out, Applied{Target: t, Set: set})
		}
	}
	return out, nil
}
