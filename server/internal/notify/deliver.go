package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"
	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/japanese"
)

// Message is one notification: a group of alerts of one rule.
type Message struct {
	Rule    string `json:"rule"`
	Kind    string `json:"kind"`
	Subject string `json:"subject"`
	Text    string `json:"text"`
	// Count is the number of alerts in the group (Items may hold fewer).
	Count int    `json:"count"`
	Items []Item `json:"items"`
	// First and Last are the times of the first and last alert.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
}

// Item is one alert in a message.
type Item struct {
	Index      int64     `json:"index"` // log index of the event behind it
	Time       time.Time `json:"time"`
	Agent      string    `json:"agent,omitempty"`
	Hostname   string    `json:"hostname,omitempty"`
	Department string    `json:"department,omitempty"`
	Type       string    `json:"type"`
	Control    string    `json:"control,omitempty"`
	Object     string    `json:"object,omitempty"`
	User       string    `json:"user,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	RegisterID string    `json:"register_id,omitempty"`
	// Detail is what the alert is about in words, where its type has more
	// to say than its reason: a bulk summary's operations by type and
	// program and its window, an overdue incident's title.
	Detail string `json:"detail,omitempty"`
	// IP is where a failed login came from.
	IP string `json:"ip,omitempty"`
	// From and To are when what a bulk summary counts happened; its Time
	// is when it was recorded.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// URL is the event's own page on the dashboard (Config.DashboardURL).
	URL string   `json:"url,omitempty"`
	ops []string // bulk summary: the operation types it counts
}

// Attachment is a file attached to a mail.
type Attachment struct {
	Name, ContentType string
	Data              []byte
}

// sendMail delivers m to rcpts through the relay.
func sendMail(ctx context.Context, cfg SMTP, rcpts []string, m Message, files ...Attachment) error {
	msg, err := buildMail(cfg, rcpts, m)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := msg.AttachReader(f.Name, bytes.NewReader(f.Data), gomail.WithFileContentType(gomail.ContentType(f.ContentType))); err != nil {
			return fmt.Errorf("notify: attach %s: %w", f.Name, err)
		}
	}
	opts := []gomail.Option{gomail.WithPort(cfg.Port), gomail.WithTimeout(30 * time.Second)}
	tc := &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}
	if cfg.CAPEM != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cfg.CAPEM)) {
			return errors.New("notify: smtp.ca_pem holds no certificate")
		}
		tc.RootCAs = pool
	}
	switch cfg.Security {
	case SecurityTLS:
		opts = append(opts, gomail.WithSSL(), gomail.WithTLSConfig(tc))
	case SecuritySTARTTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory), gomail.WithTLSConfig(tc))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if cfg.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password))
	}
	c, err := gomail.NewClient(cfg.Host, opts...)
	if err != nil {
		return fmt.Errorf("notify: smtp client: %w", err)
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("notify: smtp %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	return nil
}

// buildMail makes the mail. ISO-2022-JP (the charset Japanese mail
// clients have always read) is transcoded here, since go-mail only labels
// parts. Both charsets go base64: go-mail v0.8.1 writes a part labelled
// 7bit as quoted-printable, which readers would not decode.
func buildMail(cfg SMTP, rcpts []string, m Message) (*gomail.Msg, error) {
	var msg *gomail.Msg
	if cfg.Charset == CharsetUTF8 {
		msg = gomail.NewMsg(gomail.WithCharset(gomail.CharsetUTF8), gomail.WithEncoding(gomail.EncodingB64))
		msg.Subject(m.Subject)
		msg.SetBodyString(gomail.TypeTextPlain, crlf(m.Text))
	} else {
		msg = gomail.NewMsg(gomail.WithCharset(gomail.CharsetISO2022JP), gomail.WithEncoding(gomail.EncodingB64))
		subj, err := iso2022Words(jisX0208Only(m.Subject))
		if err != nil {
			return nil, err
		}
		msg.SetGenHeaderPreformatted(gomail.HeaderSubject, subj)
		// Paths may hold characters outside JIS X 0208: "?" or 〓 rather than no mail.
		body, err := encoding.ReplaceUnsupported(japanese.ISO2022JP.NewEncoder()).String(crlf(jisX0208Only(m.Text)))
		if err != nil {
			return nil, fmt.Errorf("notify: body not representable in ISO-2022-JP: %w", err)
		}
		msg.SetBodyString(gomail.TypeTextPlain, body)
	}
	if err := msg.From(cfg.From); err != nil {
		return nil, fmt.Errorf("notify: from: %w", err)
	}
	if err := msg.To(rcpts...); err != nil {
		return nil, fmt.Errorf("notify: recipients: %w", err)
	}
	msg.SetDate()
	msg.SetMessageID()
	return msg, nil
}

func crlf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
}

// iso2022Words encodes s as RFC 2047 encoded words in ISO-2022-JP, each
// self-contained (ending in ASCII) and under 75 characters, folded.
func iso2022Words(s string) (string, error) {
	rs := []rune(s)
	var words []string
	for len(rs) > 0 {
		n := min(len(rs), 12)
		b, err := encoding.ReplaceUnsupported(japanese.ISO2022JP.NewEncoder()).String(string(rs[:n]))
		if err != nil {
			return "", fmt.Errorf("notify: subject not representable in ISO-2022-JP: %w", err)
		}
		words = append(words, "=?ISO-2022-JP?B?"+base64.StdEncoding.EncodeToString([]byte(b))+"?=")
		rs = rs[n:]
	}
	return strings.Join(words, "\r\n "), nil
}

// webhookClient posts to webhooks; no redirects (a webhook URL is exact).
var webhookClient = &http.Client{Timeout: 15 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// webhookBody renders m in the webhook's format.
func webhookBody(format string, m Message) ([]byte, error) {
	switch format {
	case FormatSlack:
		// Incoming webhooks: text is shown; mrkdwn bold for the subject.
		return json.Marshal(map[string]any{"text": "*" + m.Subject + "*\n" + m.Text})
	case FormatTeams:
		// An Adaptive Card, as Teams Workflows ("when a webhook request is
		// received") and connectors accept.
		card := map[string]any{"type": "AdaptiveCard", "version": "1.4",
			"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
			"body": []map[string]any{
				{"type": "TextBlock", "text": m.Subject, "weight": "Bolder", "size": "Medium", "wrap": true},
				{"type": "TextBlock", "text": m.Text, "wrap": true},
			}}
		return json.Marshal(map[string]any{"type": "message", "attachments": []map[string]any{
			{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}}})
	default:
		return json.Marshal(m)
	}
}

// postWebhook delivers m to one webhook; any answer but 2xx is a failure.
func postWebhook(ctx context.Context, w Webhook, m Message) error {
	body, err := webhookBody(w.Format, m)
	if err != nil {
		return fmt.Errorf("notify: encode webhook: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("notify: webhook %s: %w", w.Name, withoutURL(err))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "mamori-server")
	resp, err := webhookClient.Do(req)
	if err != nil {
		return fmt.Errorf("notify: webhook %s: %w", w.Name, withoutURL(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("notify: webhook %s answered %s", w.Name, resp.Status)
	}
	return nil
}

// withoutURL drops the URL Go's HTTP client puts in its errors: a Teams or
// Slack webhook URL is a credential, and the error goes into the log and
// the hash-chained delivery events. The host stays in dial errors.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s to its URL: %w", ue.Op, ue.Err)
	}
	return err
}

// jisX0208Only replaces the characters x/text's ISO-2022-JP encoder would
// write from the NEC and IBM extensions (①, ㈱, 髙: rows 13 and 89-92) with
// 〓, the mark Japanese mail uses for a character it cannot carry: strict
// readers (iconv, mail filters) refuse a whole body for one of them.
func jisX0208Only(s string) string {
	ok := func(r rune) bool {
		if r < 0x80 {
			return true
		}
		b, err := japanese.ISO2022JP.NewEncoder().String(string(r))
		// ESC $ B, two bytes, ESC ( B; anything else (half-width kana,
		// unsupported) is the encoder's own business.
		if err != nil || len(b) != 8 || b[1] != '$' {
			return true
		}
		row := int(b[3]) - 0x20
		return (row >= 1 && row <= 8) || (row >= 16 && row <= 84)
	}
	if strings.IndexFunc(s, func(r rune) bool { return !ok(r) }) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if ok(r) {
			return r
		}
		return '〓'
	}, s)
}
