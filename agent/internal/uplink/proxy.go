package uplink

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpproxy"
)

// ParseProxy checks an HTTP proxy URL (PROXY property, --proxy):
// http://host:port or https://host:port, optionally with user:password.
func ParseProxy(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("uplink: proxy %q: want http://host:port", redactURL(s))
	}
	return u, nil
}

// redactURL hides a password in a proxy URL for error messages and logs.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// ProxyFunc is the proxy choice of every agent connection (enrollment,
// shipping, policy): the configured proxy when one is set, else the system's
// (systemProxy: WinHTTP settings on Windows, HTTPS_PROXY/NO_PROXY
// elsewhere). The CA pin is checked end to end through the CONNECT tunnel,
// so a proxy cannot read or alter the traffic.
func ProxyFunc(configured string) func(*http.Request) (*url.URL, error) {
	if configured != "" {
		u, err := ParseProxy(configured)
		if err != nil {
			return func(*http.Request) (*url.URL, error) { return nil, err }
		}
		return http.ProxyURL(u)
	}
	return systemProxy
}

// parseWinHTTPProxy turns WinHTTP's proxy list ("host:port" or
// "http=h1:p1;https=h2:p2") and bypass list ("*.corp;<local>") into a proxy
// function; nil when no proxy applies to https.
func parseWinHTTPProxy(proxy, bypass string) func(*url.URL) (*url.URL, error) {
	var chosen string
	for e := range strings.FieldsFuncSeq(proxy, func(r rune) bool { return r == ';' || r == ' ' }) {
		scheme, addr, ok := strings.Cut(e, "=")
		switch {
		case !ok && chosen == "":
			chosen = e
		case ok && strings.EqualFold(scheme, "https"):
			chosen = addr
		}
	}
	if chosen == "" {
		return nil
	}
	if !strings.Contains(chosen, "://") {
		chosen = "http://" + chosen
	}
	var no []string
	for b := range strings.FieldsFuncSeq(bypass, func(r rune) bool { return r == ';' || r == ' ' || r == ',' }) {
		if b != "<local>" {
			no = append(no, strings.TrimPrefix(b, "*"))
		}
	}
	return (&httpproxy.Config{HTTPSProxy: chosen, NoProxy: strings.Join(no, ",")}).ProxyFunc()
}
