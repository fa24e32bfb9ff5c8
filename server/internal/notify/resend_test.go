package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// TestFailedDeliveryResentOnceTheReceiverIsBack: a message whose retries
// ran out against a receiver that was down is kept with its items, its
// error is said in Japanese, and it is re-sent, once, to the destination
// that failed when someone asks after the receiver is back; a re-send that
// fails again leaves it failed.
func TestFailedDeliveryResentOnceTheReceiverIsBack(t *testing.T) {
	r := newRig(t, map[string]AgentInfo{"pc1": {Hostname: "PC-01", Department: "総務部"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down: connection refused
	set := Settings{
		Webhooks: []Webhook{{Name: "local", URL: "http://" + addr + "/hook", Format: FormatGeneric}},
		Rules:    []Rule{{Name: "媒体", Kind: KindMedia, Webhooks: []string{"local"}, Delay: Duration(50 * time.Millisecond)}},
		Retry:    Retry{Attempts: 2, Initial: Duration(10 * time.Millisecond), Max: Duration(20 * time.Millisecond)},
	}
	if _, err := r.n.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	seal(t, r.store, "pc1", event.Event{Control: "media", Type: "media.blocked", Severity: event.Violation,
		Object: `E:\顧客\見積.xlsx`, Attrs: event.Attrs{"reason": "unregistered"}})
	var failed int64 = -1
	waitFor(t, 10*time.Second, "the failed delivery", func() bool {
		for _, e := range deliveryLog(t, r.store) {
			if e.Type == TypeFailed {
				failed = e.Index
			}
		}
		return failed >= 0
	})
	row := func() AlertRow {
		t.Helper()
		rows, err := r.n.Alerts(context.Background(), time.Now().Add(-time.Hour), 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range rows {
			if a.Index == failed {
				return a
			}
		}
		t.Fatalf("failed delivery %d not in the alert list", failed)
		return AlertRow{}
	}
	a := row()
	if len(a.Items) != 1 || a.Items[0].Hostname != "PC-01" || a.Items[0].Object != `E:\顧客\見積.xlsx` || a.Count != 1 {
		t.Errorf("failed row items %+v count %d", a.Items, a.Count)
	}
	if !strings.Contains(a.ErrorJA, "接続できませんでした (connection refused)") || !strings.Contains(a.Error, "connect: connection refused") ||
		!strings.Contains(a.ReasonJA, "接続できませんでした") {
		t.Errorf("failed row error ja %q raw %q reason %q", a.ErrorJA, a.Error, a.ReasonJA)
	}

	// Still down: the re-send fails, is recorded, and the alert stays failed.
	if err := r.n.Resend(context.Background(), "kanri", "web", failed); !errors.Is(err, ErrSendFailed) {
		t.Fatalf("re-send while down: %v", err)
	}
	if a := row(); a.Resent || !strings.Contains(a.ErrorJA, "接続できませんでした") || a.ResendBy != "kanri" {
		t.Errorf("after a failed re-send: %+v", a)
	}

	// Back: one re-send delivers it; a second is refused.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken again: %v", addr, err)
	}
	var mu sync.Mutex
	var got []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b := make([]byte, 64<<10)
		n, _ := req.Body.Read(b)
		mu.Lock()
		got = append(got, string(b[:n]))
		mu.Unlock()
	}))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	if err := r.n.Resend(context.Background(), "kanri", "web", failed); err != nil {
		t.Fatalf("re-send: %v", err)
	}
	if err := r.n.Resend(context.Background(), "kanri", "web", failed); !errors.Is(err, ErrResent) {
		t.Errorf("second re-send: %v", err)
	}
	mu.Lock()
	if len(got) != 1 || !strings.Contains(got[0], `見積.xlsx`) || !strings.Contains(got[0], "PC-01") {
		t.Errorf("receiver got %q", got)
	}
	mu.Unlock()
	var sent int
	for _, e := range deliveryLog(t, r.store) {
		if e.Type == TypeSent && fmt.Sprint(e.Attrs["resend_of"]) == fmt.Sprint(failed) {
			sent++
			if e.User != "kanri" || e.Attrs["destination"] != "webhook:local" {
				t.Errorf("re-send record %+v", e)
			}
		}
	}
	if sent != 1 {
		t.Errorf("%d re-sends recorded as sent, want 1", sent)
	}
	if a := row(); !a.Resent || a.ResendBy != "kanri" {
		t.Errorf("after the re-send: %+v", a)
	}

	// Not a failed delivery: nothing to re-send.
	if err := r.n.Resend(context.Background(), "kanri", "web", 999999); !errors.Is(err, ErrNoAlert) {
		t.Errorf("no such index: %v", err)
	}
}

func TestErrorJA(t *testing.T) {
	for raw, want := range map[string]string{
		"notify: webhook local: Post to its URL: dial tcp 127.0.0.1:18812: connect: connection refused": "接続できませんでした (connection refused)",
		"notify: webhook soc answered 503 Service Unavailable":                                          "受信側がエラーを返しました (503 Service Unavailable)",
		"notify: nowhere to send: the rule has no recipients or webhooks":                               "送信先がありません",
		"notify: webhook x: Post to its URL: dial tcp: lookup nohost.example: no such host":             "宛先のホスト名が見つかりませんでした (no such host)",
	} {
		if got := ErrorJA(raw); !strings.HasPrefix(got, want) {
			t.Errorf("ErrorJA(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestKeptMessageFitsAnEvent: a large message's failure is still recorded
// (items dropped, text cut to fit the event's attrs limit).
func TestKeptMessageFitsAnEvent(t *testing.T) {
	r := newRig(t, nil)
	m := Message{Rule: "r", Kind: KindBulkCopy, Subject: "s", Count: 60, Text: strings.Repeat("登録フォルダからの大量読み出し\n", 2000)}
	for i := range 50 {
		m.Items = append(m.Items, Item{Index: int64(i), Time: time.Now(), Type: "fileaccess.bulk", Object: strings.Repeat(`\顧客`, 100),
			Detail: strings.Repeat("ファイル操作", 100)})
	}
	r.n.record(context.Background(), TypeFailed, event.Warning, destination{name: "webhook:x"}, m, 3, errors.New("boom"))
	log := deliveryLog(t, r.store)
	if len(log) != 1 {
		t.Fatalf("the large failure was not recorded: %d events", len(log))
	}
	if got, ok := storedMessage(&log[0]); !ok || len(got.Items) == 0 || !strings.HasSuffix(got.Text, "(長いため以下省略)\n") || got.Count != 60 {
		t.Errorf("kept %d items, count %d, text ends %q", len(got.Items), got.Count, got.Text[max(0, len(got.Text)-40):])
	}
}

// TestTwoServersResendOnce: two servers (two notifiers on one log and one
// etcd) asked at the same moment to re-send the same failed delivery send
// it once; the other is told a re-send is under way. A re-send that fails
// leaves the delivery free for the next try, from either server.
func TestTwoServersResendOnce(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	var calls atomic.Int32
	var up atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		calls.Add(1)
		time.Sleep(300 * time.Millisecond) // both servers are asked while the first sends
		if !up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if _, err := r.n.PutSettings(ctx, Settings{Webhooks: []Webhook{{Name: "x", URL: srv.URL, Format: FormatGeneric}}}, -1); err != nil {
		t.Fatal(err)
	}
	m := Message{Rule: "r", Kind: KindMedia, Subject: "[Mamori] 未登録の媒体 1 件", Text: "本文", Count: 1,
		Items: []Item{{Index: 1, Time: time.Now(), Type: "media.blocked", Object: `E:\`}}}
	r.n.record(ctx, TypeFailed, event.Warning, destination{name: "webhook:x"}, m, 3, errors.New("boom"))
	failed := deliveryLog(t, r.store)[0].Index
	other, err := New(r.n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	both := func() (errs [2]error) {
		var wg sync.WaitGroup
		for i, n := range []*Notifier{r.n, other} {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = n.Resend(ctx, fmt.Sprint("admin", i), "", failed) }()
		}
		wg.Wait()
		return errs
	}

	// Down: one server tries, the other is refused; the delivery stays failed.
	errs := both()
	if calls.Load() != 1 || !(errors.Is(errs[0], ErrSendFailed) && errors.Is(errs[1], ErrResent) ||
		errors.Is(errs[1], ErrSendFailed) && errors.Is(errs[0], ErrResent)) {
		t.Fatalf("while down: %d sends, errors %v", calls.Load(), errs)
	}
	// Back: once more from both at once; one send gets through.
	up.Store(true)
	errs = both()
	if calls.Load() != 2 || !(errs[0] == nil && errors.Is(errs[1], ErrResent) || errs[1] == nil && errors.Is(errs[0], ErrResent)) {
		t.Fatalf("when back: %d sends, errors %v", calls.Load(), errs)
	}
	// Done: neither sends it again.
	errs = both()
	if calls.Load() != 2 || !errors.Is(errs[0], ErrResent) || !errors.Is(errs[1], ErrResent) {
		t.Errorf("after it got through: %d sends, errors %v", calls.Load(), errs)
	}
}
