package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mamori/mamori/server/internal/api"
	"github.com/mamori/mamori/server/internal/state"
)

// tokensUsage is the usage of tokens and of agents, by command.
var tokensUsage = map[string]string{
	"tokens": `usage:
  mamori-server tokens list [client flags]                       list enrollment and API tokens (never their secrets)
  mamori-server tokens create [enroll] --ttl D --uses N [client flags]
                                                                 a new enrollment token, printed once
  mamori-server tokens create api --name WHO --role auditor|manager|admin --ttl D [client flags]
                                                                 an expiring API token for a person, printed once
  mamori-server tokens revoke ID [client flags]                  revoke a token at once

flags:
`,
	"agents": `usage:
  mamori-server agents disable|enable ID [client flags]          refuse (or accept again) an agent's certificate;
                                                                 its record and evidence stay

client flags:
`,
}

// cmdTokens runs "tokens ..." and "agents ..." against a running server.
func cmdTokens(cmd string, args []string, stdout, stderr io.Writer) error {
	f := newAdminFlags(stderr)
	// Only tokens has these flags: agents --help lists the client flags alone.
	ttlText, uses, name, role := new(string), new(int), new(string), new(string)
	if cmd == "tokens" {
		f.fs.StringVar(ttlText, "ttl", "24h", "tokens create: how long the token is valid: days (30d) or a Go duration (12h)")
		f.fs.IntVar(uses, "uses", 1, "tokens create enroll: how many enrollments")
		f.fs.StringVar(name, "name", "", "tokens create api: the person or script the token is for")
		f.fs.StringVar(role, "role", "auditor", "tokens create api: auditor and manager read, admin also writes")
	}
	f.fs.Usage = func() { fmt.Fprint(stderr, tokensUsage[cmd]); f.fs.PrintDefaults() }
	// Flags may come before or after the subcommand ("tokens --help").
	pos, err := parseInterleaved(f.fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		f.fs.Usage()
		return usageError{fmt.Errorf("%s: subcommand required", cmd)}
	}
	sub, pos := pos[0], pos[1:]
	want := map[string]int{"tokens list": 0, "tokens create": 0, "tokens revoke": 1, "agents disable": 1, "agents enable": 1}
	n, ok := want[cmd+" "+sub]
	if !ok {
		return unknownSubcommand(stderr, cmd, sub, f.fs.Usage)
	}
	kind := "enroll"
	if cmd+" "+sub == "tokens create" && len(pos) == 1 {
		kind, pos = pos[0], nil
		if kind != "enroll" && kind != "api" {
			return usageError{fmt.Errorf("tokens create: %q is not enroll or api", kind)}
		}
	}
	if len(pos) != n {
		return usageError{fmt.Errorf("%s %s: want %d argument(s), got %d", cmd, sub, n, len(pos))}
	}
	var ttl time.Duration
	if cmd+" "+sub == "tokens create" {
		if ttl, err = parseTTL(*ttlText); err != nil {
			return usageError{fmt.Errorf("tokens create: %w", err)}
		}
		if err := checkTokenCreate(kind, *ttlText, ttl, *uses, *name, *role); err != nil {
			return usageError{fmt.Errorf("tokens create: %w", err)}
		}
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	switch cmd + " " + sub {
	case "tokens list":
		var ans struct {
			Tokens []struct {
				ID, Kind, Name, Role, CreatedBy string
				Created                         time.Time
				Expires                         *time.Time
				UsesLeft                        *int `json:"uses_left"`
				Expired                         bool
				State                           string
			} `json:"tokens"`
		}
		if err := c.call("GET", "/api/v1/tokens", "", nil, &ans); err != nil {
			return fmt.Errorf("tokens list: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tNAME\tROLE\tCREATED\tEXPIRES\tUSES LEFT\tSTATE")
		for _, t := range ans.Tokens {
			exp, left, st := "never", "-", "valid"
			if t.Expires != nil {
				exp = t.Expires.Format(time.RFC3339)
			}
			if t.UsesLeft != nil {
				left = fmt.Sprint(*t.UsesLeft)
			}
			switch {
			case t.State != "":
				st = strings.ReplaceAll(t.State, "_", " ") // used_up: used up
			case t.Expired:
				st = "expired" // a server from before "state"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Kind, t.Name, t.Role, t.Created.Format(time.RFC3339), exp, left, st)
		}
		return tw.Flush()
	case "tokens create":
		body := map[string]any{"kind": kind, "ttl": ttl.String()}
		if kind == "api" {
			body["name"], body["role"] = *name, *role
		} else {
			body["uses"] = *uses
		}
		var ans struct {
			Token, ID string
			Expires   time.Time
		}
		b, _ := json.Marshal(body)
		if err := c.call("POST", "/api/v1/tokens", "application/json", b, &ans); err != nil {
			return fmt.Errorf("tokens create: %w", err)
		}
		fmt.Fprintf(stdout, "%s\n", ans.Token)
		fmt.Fprintf(stderr, "token %s (%s) valid until %s; it is shown only this once\n", ans.ID, kind, ans.Expires.Format(time.RFC3339))
	case "tokens revoke":
		var ans map[string]any
		if err := c.call("DELETE", "/api/v1/tokens/"+url.PathEscape(pos[0]), "", nil, &ans); err != nil {
			return fmt.Errorf("tokens revoke: %w", err)
		}
		fmt.Fprintf(stdout, "token %s revoked\n", pos[0])
	case "agents disable", "agents enable":
		var ans map[string]any
		if err := c.call("POST", "/api/v1/agents/"+url.PathEscape(pos[0])+"/"+sub, "", nil, &ans); err != nil {
			return fmt.Errorf("agents %s: %w", sub, err)
		}
		fmt.Fprintf(stdout, "agent %s %sd\n", pos[0], sub)
	}
	return nil
}

// parseTTL reads --ttl: whole days (30d), as --retention takes them, or a
// Go duration (12h, 90m).
func parseTTL(s string) (time.Duration, error) {
	bad := fmt.Errorf("--ttl: %q is not a duration such as 12h, 30d or 90d", s)
	if n, ok := strings.CutSuffix(strings.TrimSpace(s), "d"); ok {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || days > int64(math.MaxInt64/(24*time.Hour)) || days < -int64(math.MaxInt64/(24*time.Hour)) {
			return 0, bad
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, bad
	}
	return d, nil
}

// days writes d as whole days (90d) when it is, else as a Go duration.
func days(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// checkTokenCreate refuses what the server would refuse with 400, before
// the request: the same bounds as POST /api/v1/tokens.
func checkTokenCreate(kind, ttlText string, ttl time.Duration, uses int, name, role string) error {
	maxTTL := api.MaxTokenTTL
	if kind == "api" {
		maxTTL = api.MaxPersonTokenTTL
	}
	if ttl <= 0 || ttl > maxTTL {
		return fmt.Errorf("--ttl %s: want from 1s to %s for an %s token", ttlText, days(maxTTL), kind)
	}
	if kind == "enroll" {
		if uses < 1 || uses > api.MaxTokenUses {
			return fmt.Errorf("--uses %d: want 1 to %d", uses, api.MaxTokenUses)
		}
		return nil
	}
	switch role {
	case api.RoleAuditor, api.RoleManager, api.RoleAdmin:
	default:
		return fmt.Errorf("--role %q: want auditor, manager or admin", role)
	}
	if !state.ValidTokenName(name) { // the server's rule
		return fmt.Errorf("--name %q: %s (the person or script the token is for)", name, state.TokenNameRule)
	}
	return nil
}
