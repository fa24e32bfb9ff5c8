package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"golang.org/x/text/encoding/japanese"
)

// relay is a real SMTP server (go-smtp) in the test process: the mail
// relay the server process delivers alerts to.
type relay struct {
	addr *net.TCPAddr
	got  chan relayed
}

type relayed struct {
	to   []string
	data []byte
	at   time.Time
}

type relaySession struct {
	r  *relay
	to []string
}

func (s *relaySession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *relaySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *relaySession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.r.got <- relayed{to: s.to, data: b, at: time.Now()}
	return nil
}
func (s *relaySession) Reset()        { s.to = nil }
func (s *relaySession) Logout() error { return nil }

func startRelay(t *testing.T) *relay {
	t.Helper()
	r := &relay{got: make(chan relayed, 100)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &relaySession{r: r}, nil }))
	srv.Domain = "relay.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().(*net.TCPAddr)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return r
}

// subjectAndBody decodes an ISO-2022-JP mail (RFC 2047 subject, base64 body).
func subjectAndBody(t *testing.T, raw []byte) (string, string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("mail: %v\n%s", err, raw)
	}
	dec := &mime.WordDecoder{CharsetReader: func(cs string, in io.Reader) (io.Reader, error) {
		if strings.EqualFold(cs, "iso-2022-jp") {
			return japanese.ISO2022JP.NewDecoder().Reader(in), nil
		}
		return nil, errors.New("unexpected charset " + cs)
	}}
	subj, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if !strings.EqualFold(params["charset"], "iso-2022-jp") || !strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "base64") {
		t.Fatalf("content type %q, encoding %q", msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"))
	}
	b, _ := io.ReadAll(msg.Body)
	body, err := io.ReadAll(japanese.ISO2022JP.NewDecoder().Reader(
		base64.NewDecoder(base64.StdEncoding, bytes.NewReader(bytes.Join(bytes.Fields(b), nil)))))
	if err != nil {
		t.Fatal(err)
	}
	return subj, string(body)
}

// TestBlockedStickReachesMailAndWebhook (issue 16): a USB stick the real
// agent blocks reaches, as one message each after the rule's delay, a real
// SMTP relay (the department's recipients, Japanese in ISO-2022-JP) and a
// Slack-format webhook, both listed in the delivery log; an incident opened
// from that alert finds the 台帳 entry on the PC and shows its 速報/確報 dates.
func TestBlockedStickReachesMailAndWebhook(t *testing.T) {
	h := newHostRoot(t)
	s, a := mediaAgent(t, h)
	rl := startRelay(t)
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range s.query(t, url.Values{"control": {"notify"}}) {
				t.Logf("%s %s %v", e.Type, e.Object, e.Attrs)
			}
		}
	})
	var mu sync.Mutex
	var posts [][]byte
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		posts = append(posts, b)
		mu.Unlock()
	}))
	defer hook.Close()
	nposts := func() int { mu.Lock(); defer mu.Unlock(); return len(posts) }

	delay := 3 * time.Second
	set := map[string]any{
		"smtp":     map[string]any{"host": "127.0.0.1", "port": rl.addr.Port, "security": "none", "from": "mamori@example.jp"},
		"webhooks": []map[string]string{{"name": "chat", "url": hook.URL, "format": "slack"}},
		"rules": []map[string]any{{"name": "媒体", "kind": "unregistered_media", "department_recipients": true,
			"webhooks": []string{"chat"}, "delay": delay.String()}},
		"departments": map[string]any{"総務部": map[string]any{"recipients": []string{"somu-kanri@example.jp"}}},
	}
	body, _ := json.Marshal(set)
	if st, b := s.adminDo(t, "PUT", "/api/v1/notifications", body); st != 200 {
		t.Fatalf("PUT notifications: %d %s", st, b)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	entry := fmt.Sprintf(`{"id":"PI-0001","name":"顧客名簿","purpose":"商品発送","record_count":1250,"medium":"electronic",
		"locations":[{"host":%q,"folder":"/srv/顧客"}],"owner":"山田 太郎","department":"総務部","retention":"5y","disposal_method":"データ消去"}`, host)
	if st, b := s.adminDo(t, "POST", "/api/v1/register", []byte(entry)); st != 201 {
		t.Fatalf("register: %d %s", st, b)
	}

	h.insert(t)
	inserted := time.Now()
	var m relayed
	select {
	case m = <-rl.got:
	case <-time.After(delay + 60*time.Second):
		t.Fatal("no mail within a minute of the block")
	}
	t.Logf("mail %v after the stick was inserted (rule delay %v)", m.at.Sub(inserted).Round(10*time.Millisecond), delay)
	subj, text := subjectAndBody(t, m.data)
	if len(m.to) != 1 || m.to[0] != "somu-kanri@example.jp" || !strings.HasPrefix(subj, "[Mamori] 未登録・未承認の媒体 1 件") {
		t.Errorf("mail to %v subject %q", m.to, subj)
	}
	if !strings.Contains(text, "媒体のブロック") || !strings.Contains(text, host+" (総務部)") || strings.Contains(text, "media.blocked") {
		t.Errorf("mail body:\n%s", text)
	}
	waitFor(t, 10*time.Second, "the webhook post", func() bool { return nposts() == 1 })
	mu.Lock()
	var sl struct{ Text string }
	if err := json.Unmarshal(posts[0], &sl); err != nil || !strings.HasPrefix(sl.Text, "*[Mamori] 未登録・未承認の媒体 1 件") {
		t.Errorf("slack post %s (%v)", posts[0], err)
	}
	mu.Unlock()
	time.Sleep(delay) // one message each: nothing else comes
	if len(rl.got) != 0 || nposts() != 1 {
		t.Errorf("%d more mails, %d posts; want one of each", len(rl.got), nposts())
	}
	var dl struct {
		Deliveries []struct {
			Outcome, Destination string
		}
	}
	waitFor(t, 10*time.Second, "both deliveries in the log", func() bool {
		st, b := s.adminDo(t, "GET", "/api/v1/notifications/log", nil)
		return st == 200 && json.Unmarshal(b, &dl) == nil && len(dl.Deliveries) == 2
	})
	for _, d := range dl.Deliveries {
		if d.Outcome != "sent" {
			t.Errorf("delivery %+v", d)
		}
	}

	// An incident from that alert: the 台帳 entry kept on the PC, its
	// record count as the persons, and the 速報/確報 dates from discovery.
	var page struct {
		Events []struct{ Index int64 }
	}
	st, b := s.adminDo(t, "GET", "/api/v1/events?"+url.Values{"agent": {a.id}, "type": {"media.blocked"}}.Encode(), nil)
	if st != 200 || json.Unmarshal(b, &page) != nil || len(page.Events) == 0 {
		t.Fatalf("media.blocked: %d %s", st, b)
	}
	disc := time.Now().In(time.FixedZone("JST", 9*3600))
	open, _ := json.Marshal(map[string]any{"alert": page.Events[0].Index, "discovered_at": disc.Format(time.RFC3339)})
	st, b = s.adminDo(t, "POST", "/api/v1/incidents", open)
	var in struct {
		ID        string
		Affected  []struct{ ID string }
		Persons   int
		Deadlines struct {
			PreliminaryFrom string `json:"preliminary_from"`
			PreliminaryBy   string `json:"preliminary_by"`
			FinalBy         string `json:"final_by"`
		}
	}
	if st != 201 || json.Unmarshal(b, &in) != nil {
		t.Fatalf("open incident: %d %s", st, b)
	}
	day := func(n int) string {
		return time.Date(disc.Year(), disc.Month(), disc.Day()+n, 0, 0, 0, 0, disc.Location()).Format(time.DateOnly)
	}
	if len(in.Affected) != 1 || in.Affected[0].ID != "PI-0001" || in.Persons != 1250 ||
		in.Deadlines.PreliminaryFrom != day(3) || in.Deadlines.PreliminaryBy != day(5) || in.Deadlines.FinalBy != day(30) {
		t.Errorf("incident: %s", b)
	}
	if st, b := s.adminDo(t, "GET", "/api/v1/incidents/"+in.ID+"/worksheet?format=csv", nil); st != 200 || !strings.Contains(string(b), `"(3) 本人の数","1250"`) {
		t.Errorf("worksheet CSV: %d %s", st, b)
	}
}
