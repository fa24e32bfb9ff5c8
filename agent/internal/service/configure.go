package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/uplink"
)

// Variables of /etc/mamori/agent.env (configure --env-file), the Linux
// packages' counterpart of the MSI properties SERVER, TOKEN, CAHASH,
// DEPARTMENT and PROXY.
const (
	EnvServer     = "MAMORI_SERVER"
	EnvToken      = "MAMORI_TOKEN"
	EnvCAHash     = "MAMORI_CA_HASH"
	EnvDepartment = "MAMORI_DEPARTMENT"
	EnvProxy      = "MAMORI_PROXY"
)

// maxEnvFile bounds --env-file.
const maxEnvFile = 64 << 10

// cmdConfigure writes the installed config the service enrolls from at
// start. It never contacts the server: installers run it, and a failed or
// rolled-back install must leave no agent on the server.
func cmdConfigure(args []string, stdout, stderr io.Writer) error {
	fs, dir := newFlags("configure", stderr)
	server := fs.String("server", "", "server URL, or a comma-separated list tried in order (required)")
	token := fs.String("token", "", "enrollment token, required until this PC is enrolled (kept until enrolled, then removed)")
	caHash := fs.String("ca-hash", "", "sha256:<hex> fingerprint of the server's CA (required)")
	dept := fs.String("department", "", "department recorded for this PC")
	proxy := fs.String("proxy", "", "HTTP proxy URL (default: the system's)")
	installer := fs.Bool("installer", false, "run by the MSI: an empty --server keeps the config (upgrade, repair); also sets the service's quoted path, recovery actions and delayed start")
	envFile := fs.String("env-file", "", "read "+EnvServer+", "+EnvToken+", "+EnvCAHash+", "+EnvDepartment+", "+EnvProxy+" from FILE (flags win)")
	if err := parse(fs, args); err != nil {
		return err
	}
	trimFlags(server, token, caHash, dept, proxy, envFile)
	c := uplink.Config{Token: *token, CAHash: *caHash, Department: *dept, Proxy: *proxy}
	if *server != "" {
		c.Servers = []string{*server}
	}
	if *envFile != "" {
		env, err := readEnvFile(*envFile)
		if err != nil {
			return usageError{err}
		}
		set := func(dst *string, key string) {
			if *dst == "" {
				*dst = strings.TrimSpace(env[key])
			}
		}
		if v := strings.TrimSpace(env[EnvServer]); len(c.Servers) == 0 && v != "" {
			c.Servers = []string{v}
		}
		set(&c.Token, EnvToken)
		set(&c.CAHash, EnvCAHash)
		set(&c.Department, EnvDepartment)
		set(&c.Proxy, EnvProxy)
	}
	// An upgrade or a second run without a token keeps the one waiting.
	if old, err := uplink.LoadConfig(*dir); err == nil && c.Token == "" {
		c.Token = old.Token
	}
	if *installer {
		// Best effort: Wine, for one, refuses delayed start; the agent
		// tries again at each start.
		defer func() {
			if err := hardenService(); err != nil {
				fmt.Fprintf(stderr, "mamori-agent configure: service settings not all applied (the service retries at start): %v\n", err)
			}
		}()
		if len(c.Servers) == 0 {
			if _, err := uplink.LoadConfig(*dir); err == nil {
				fmt.Fprintf(stdout, "no SERVER given: kept the config in %s\n", *dir)
			} else {
				fmt.Fprintf(stdout, "no SERVER given: run mamori-agent configure --server URL --token T --ca-hash sha256:HEX, then start the service\n")
			}
			return nil
		}
	}
	switch {
	case len(c.Servers) == 0:
		return usageError{errors.New("--server is required")}
	case c.CAHash == "":
		return usageError{errors.New("--ca-hash is required")}
	}
	if err := c.Check(); err != nil {
		return usageError{err}
	}
	enrolled := "not enrolled yet: the service enrolls itself when it starts"
	switch st, err := uplink.LoadState(*dir); {
	case err == nil:
		// A reinstall with the same TOKEN: the identity stays, and the
		// token, a secret with a use count, is not kept.
		c.Token = ""
		enrolled = "already enrolled as " + st.AgentID + " (identity kept, token not stored)"
		if pinned := enrolledCA(*dir); pinned != "" && !strings.EqualFold(pinned, c.CAHash) {
			fmt.Fprintf(stderr, "mamori-agent configure: warning: this PC is enrolled under another CA (%s) than --ca-hash %s: "+
				"those servers will refuse its certificate. To move it to their site, stop the service, remove %s and enroll again.\n",
				pinned, c.CAHash, *dir)
		}
	case errors.Is(err, uplink.ErrNotEnrolled) && c.Token == "":
		// The service could never enroll from this config.
		return usageError{errors.New("no enrollment token and this PC is not enrolled: give --token T (TOKEN for the MSI, " + EnvToken + " in --env-file)")}
	}
	if err := uplink.SaveConfig(*dir, c); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "configured %s (servers %s); %s\n", *dir, strings.Join(c.Servers, ", "), enrolled)
	return nil
}

// enrolledCA is the fingerprint of the CA the PC enrolled under, "" when
// it cannot be read.
func enrolledCA(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, uplink.FileCA))
	if err != nil {
		return ""
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return ""
	}
	return uplink.Fingerprint(blk.Bytes)
}

// readEnvFile parses KEY=VALUE lines (systemd EnvironmentFile style:
// comments, blank lines, optional single or double quotes).
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEnvFile+1))
	if err != nil {
		return nil, fmt.Errorf("service: %s: %w", path, err)
	}
	if len(b) > maxEnvFile {
		return nil, fmt.Errorf("service: %s: larger than %d bytes", path, maxEnvFile)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			return nil, fmt.Errorf("service: %s line %d: want KEY=VALUE", path, n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			if v[0] == '"' {
				if u, err := strconv.Unquote(v); err == nil {
					v = u
				} else {
					v = v[1 : len(v)-1]
				}
			} else {
				v = v[1 : len(v)-1]
			}
		}
		env[strings.TrimSpace(k)] = v
	}
	return env, nil
}

// enrollBackoff paces self-enrollment: first retry within a second or two,
// then doubling to five minutes, with jitter so 500 PCs that boot at 9:00
// do not arrive together.
var enrollBackoff = uplink.Backoff{Base: 2 * time.Second, Max: 5 * time.Minute}

// enrollAtStart enrolls an installed but not yet enrolled agent from its
// config, retrying with backoff until it succeeds or ctx ends. The config
// is read again at each attempt, so a corrected reinstall takes effect
// without a restart.
func enrollAtStart(ctx context.Context, dir string, log zerolog.Logger) error {
	for n := 0; ; n++ {
		c, err := uplink.LoadConfig(dir)
		if errors.Is(err, uplink.ErrNoConfig) {
			return fmt.Errorf("service: %s is not enrolled and has no installed config: run mamori-agent enroll --server URL --token T --ca-hash sha256:HEX, or mamori-agent configure with the same flags and start the service", dir)
		}
		if err == nil {
			var st uplink.State
			st, err = uplink.EnrollFromConfig(ctx, dir, c)
			if err == nil {
				log.Info().Str("agent", st.AgentID).Str("server", st.Server).Int("attempt", n+1).Msg("service: enrolled from the installed config")
				if err := uplink.ForgetToken(dir); err != nil {
					log.Warn().Err(err).Msg("service: enrolled, but the token could not be removed from the config")
				}
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := enrollBackoff.Delay(n)
		writeEnrollFailure(dir, EnrollFailure{Error: err.Error(), At: time.Now().UTC(), Attempt: n + 1,
			RetryAt: time.Now().Add(wait).UTC()}, log)
		log.Warn().Err(err).Int("attempt", n+1).Str("retry_in", wait.Round(time.Millisecond).String()).Msg("service: enrollment failed; retrying (check the server URL, that it runs and is reachable, the token's uses and expiry)")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// writeEnrollFailure records a failed attempt in status.json, so `status`
// shows it (the log may be long or elsewhere). The running agent's status
// replaces it once enrolled. The process retrying is running.
func writeEnrollFailure(dir string, f EnrollFailure, log zerolog.Logger) {
	b, _ := json.MarshalIndent(Status{Running: true, PID: os.Getpid(), UpdatedAt: f.At, LastEnrollError: &f,
		Controls: map[string]controls.Status{}}, "", "  ")
	if err := uplink.WriteFileAtomic(filepath.Join(dir, FileStatus), append(b, '\n')); err != nil {
		log.Warn().Err(err).Msg("service: status file")
	}
}
