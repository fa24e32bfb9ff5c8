package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/event"
)

// rigWithHook is a running notifier whose rules post to one generic webhook.
func rigWithHook(t *testing.T, agents map[string]AgentInfo, rules ...Rule) (*rig, *hook) {
	t.Helper()
	r := newRig(t, agents)
	h := newHook(t, 0)
	for i := range rules {
		rules[i].Webhooks = []string{"g"}
	}
	set := Settings{Webhooks: []Webhook{{Name: "g", URL: h.srv.URL, Format: FormatGeneric}}, Rules: rules}
	if _, err := r.n.PutSettings(context.Background(), set, -1); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	return r, h
}

// nthMessage waits for the webhook's i-th message (from 0).
func nthMessage(t *testing.T, h *hook, i int) Message {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("message %d", i+1), func() bool { return len(h.got()) > i })
	var m Message
	if err := json.Unmarshal(h.got()[i], &m); err != nil {
		t.Fatal(err)
	}
	return m
}

var breakdownLine = regexp.MustCompile(`^- (.+): (\d+) 件$`)

// breakdown reads the 内訳 section of a message body: label -> count.
func breakdown(t *testing.T, text string) (map[string]int, int) {
	t.Helper()
	out, sum, in := map[string]int{}, 0, false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(l, "内訳"):
			in = true
		case in && l == "":
			return out, sum
		case in:
			m := breakdownLine.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("内訳 line %q is not '- what: N 件':\n%s", l, text)
			}
			n, _ := strconv.Atoi(m[2])
			out[m[1]] += n
			sum += n
		}
	}
	if !in {
		t.Fatalf("no 内訳 in:\n%s", text)
	}
	return out, sum
}

// bulkAttrs are a fileaccess.bulk summary's attrs as the agent sends them
// (fileaccess.closeBulk), through JSON as the store gives them back.
func bulkAttrs(t *testing.T, counts, procs map[string]int, from, to time.Time) event.Attrs {
	t.Helper()
	sup := 0
	for _, n := range counts {
		sup += n
	}
	b, _ := json.Marshal(map[string]any{"suppressed": sup, "counts": counts, "individually": 100, "total": sup + 100,
		"window": "1m0s", "threshold": 100, "processes": procs, "summary": "files changed",
		"from": from.UTC().Format(time.RFC3339Nano), "to": to.UTC().Format(time.RFC3339Nano)})
	var a event.Attrs
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// A burst of reads by cp and cat of a registered folder was mailed as 「404
// 件のファイル変更 (cp)」 under 「登録フォルダからの大量コピー」 with the time
// the alert was raised as its 期間. The message says what the summary says:
// the operations by type, every program with its count, the burst's own
// window; and a burst of creations is not a copy "from" the folder.
func TestBulkMessageSaysWhatTheSummarySays(t *testing.T) {
	r, h := rigWithHook(t, map[string]AgentInfo{"pc1": {Hostname: "PC-1", Department: "総務部"}},
		Rule{Name: "大量", Kind: KindBulkCopy, Delay: Duration(100 * time.Millisecond)})
	from := time.Date(2026, 12, 7, 10, 0, 0, 0, JST)
	to := from.Add(2*time.Minute + 13*time.Second)
	seal(t, r.store, "pc1", event.Event{Control: "fileaccess", Type: "fileaccess.bulk", Severity: event.Warning,
		Object: "/srv/個人情報/顧客", RegisterID: "PI-1", User: "suzuki", Process: "/usr/bin/cp",
		Attrs: bulkAttrs(t, map[string]int{"read": 304}, map[string]int{"/usr/bin/cat": 150, "/usr/bin/cp": 154}, from, to)})
	m := nthMessage(t, h, 0)
	for _, want := range []string{"ファイル閲覧 304 件", "cp 154 件", "cat 150 件", "100 件",
		"期間: 2026-12-07 10:00:00 JST から 2026-12-07 10:02:13 JST まで"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("reads: body lacks %q:\n%s", want, m.Text)
		}
	}
	if strings.Contains(m.Text, "変更") || strings.Contains(m.Subject, "大量コピー 1") {
		t.Errorf("reads called changes or a plain copy: %q\n%s", m.Subject, m.Text)
	}
	if !strings.Contains(m.Subject, "登録フォルダから") {
		t.Errorf("reads: subject %q", m.Subject)
	}

	// A copy into the folder: creations, not a copy out of it.
	seal(t, r.store, "pc1", event.Event{Control: "fileaccess", Type: "fileaccess.bulk", Severity: event.Warning,
		Object: "/srv/個人情報/顧客", RegisterID: "PI-1", User: "suzuki", Process: "/usr/bin/cp",
		Attrs: bulkAttrs(t, map[string]int{"created": 250, "modified": 50}, map[string]int{"/usr/bin/cp": 300}, from, to)})
	m = nthMessage(t, h, 1)
	if strings.Contains(m.Subject, "から") || strings.Contains(m.Text, "フォルダからの") || !strings.Contains(m.Subject, "登録フォルダへの") {
		t.Errorf("creations: subject %q\n%s", m.Subject, m.Text)
	}
	for _, want := range []string{"ファイル作成 250 件", "ファイル変更 50 件", "cp 300 件"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("creations: body lacks %q:\n%s", want, m.Text)
		}
	}

	// A newer agent's summary over the threshold by removals alone, each
	// sent one by one: nothing counted only, the whole window by type.
	a := bulkAttrs(t, map[string]int{}, map[string]int{"/usr/bin/rm": 0}, from, to)
	a["totals"], a["individually"], a["total"], a["suppressed"] = map[string]any{"deleted": json.Number("250")}, json.Number("250"), json.Number("250"), json.Number("0")
	seal(t, r.store, "pc1", event.Event{Control: "fileaccess", Type: "fileaccess.bulk", Severity: event.Warning,
		Object: "/srv/個人情報/顧客", RegisterID: "PI-1", User: "suzuki", Process: "/usr/bin/rm", Attrs: a})
	m = nthMessage(t, h, 2)
	if !strings.Contains(m.Text, "内訳: ファイル削除 250 件。個別に記録 250 件、件数のみ 0 件") || strings.Contains(m.Text, "種類の内訳なし") ||
		!strings.Contains(m.Subject, "削除") {
		t.Errorf("removals: subject %q\n%s", m.Subject, m.Text)
	}
}

// Six failures of one user read 「件数: 6 件」 over a breakdown of 2 and
// 「ほか 4 件 (同じ内容の繰り返しを含みます)」, in codes (user/…, bad
// credentials), and counted a user under the threshold. Now the breakdown
// adds up to the count, only users at the threshold are in it, in Japanese,
// with the source address, and the rest is said exactly.
func TestLoginFailuresMessageAddsUp(t *testing.T) {
	r, h := rigWithHook(t, nil, Rule{Name: "ログイン", Kind: KindLoginFailures, Delay: Duration(300 * time.Millisecond), Threshold: 3})
	fail := func(user, reason string) {
		if _, err := r.store.AppendServer(context.Background(), event.Event{Control: "server", Type: "ui.login_failed",
			Severity: event.Warning, Object: "user/" + user, User: user, Attrs: event.Attrs{"ip": "192.0.2.7", "reason": reason, "via": "web"}}); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		fail("admin", "bad credentials")
	}
	fail("admin", "throttled")
	fail("admin", "throttled")
	fail("sato", "bad credentials") // under the threshold: not part of the alert
	m := nthMessage(t, h, 0)
	if m.Count != 6 {
		t.Errorf("count %d, want 6 (sato's one failure is under the threshold)", m.Count)
	}
	got, sum := breakdown(t, m.Text)
	if sum != m.Count || got["ログイン失敗 パスワードの誤り"] != 4 || got["ログイン失敗 試行回数の制限"] != 2 {
		t.Errorf("breakdown %v (sum %d) for count %d:\n%s", got, sum, m.Count, m.Text)
	}
	for _, bad := range []string{"sato", "user/", "bad credentials", "throttled", "同じ内容の繰り返しを含みます"} {
		if strings.Contains(m.Text, bad) {
			t.Errorf("body has %q:\n%s", bad, m.Text)
		}
	}
	for _, want := range []string{"192.0.2.7", "- admin: 6 回", "同じ内容の繰り返し 4 件"} {
		if !strings.Contains(m.Text, want) {
			t.Errorf("body lacks %q:\n%s", want, m.Text)
		}
	}
}

// 100 different files opened at night read 「件数: 100 件」 over a breakdown
// of 50 and 「ほか 50 件 (同じ内容の繰り返しを含みます)」: they were not
// repeats, only past the list's limit.
func TestOutOfHoursMessageAddsUp(t *testing.T) {
	r, h := rigWithHook(t, map[string]AgentInfo{"pc1": {Hostname: "PC-1", Department: "経理部"}},
		Rule{Name: "時間外", Kind: KindOutOfHours, Delay: Duration(500 * time.Millisecond)})
	night := time.Date(2026, 11, 26, 23, 0, 0, 0, JST) // a Thursday
	for i := range 100 {
		seal(t, r.store, "pc1", event.Event{Control: "fileaccess", Type: "file.read", Severity: event.Info, RegisterID: "PI-1",
			Time: night.Add(time.Duration(i) * time.Second), User: "suzuki", Object: fmt.Sprintf(`D:\経理\%03d.xlsx`, i)})
	}
	m := nthMessage(t, h, 0)
	got, sum := breakdown(t, m.Text)
	if m.Count != 100 || sum != 100 || got["ファイル閲覧"] != 100 {
		t.Errorf("count %d, breakdown %v:\n%s", m.Count, got, m.Text)
	}
	if strings.Contains(m.Text, "繰り返し") || !strings.Contains(m.Text, "ほか 50 件") {
		t.Errorf("the 50 not listed are not repeats:\n%s", m.Text)
	}
}

// TestEachItemLinksToItsEvent: every listed alert links to its own event
// page on the dashboard, in the text and as the generic JSON's url, and
// the 通知 link still ends the message.
func TestEachItemLinksToItsEvent(t *testing.T) {
	r, h := rigWithHook(t, map[string]AgentInfo{"pc1": {Hostname: "PC-01"}},
		Rule{Name: "媒体", Kind: KindMedia, Delay: Duration(200 * time.Millisecond)})
	seal(t, r.store, "pc1", event.Event{Control: "media", Type: "media.blocked", Severity: event.Violation, Object: "E:"})
	seal(t, r.store, "pc1", event.Event{Control: "media", Type: "media.blocked", Severity: event.Violation, Object: "F:"})
	m := nthMessage(t, h, 0)
	if len(m.Items) != 2 {
		t.Fatalf("items %+v", m.Items)
	}
	var raw struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(h.got()[0], &raw); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(m.Text, "\n")
	for i, it := range m.Items {
		want := "https://mamori.example.jp:8443/events/" + strconv.FormatInt(it.Index, 10)
		if raw.Items[i]["url"] != want {
			t.Errorf("item %d url %v, want %s", i, raw.Items[i]["url"], want)
		}
		at := -1
		for j, l := range lines {
			if strings.Contains(l, "[#"+strconv.FormatInt(it.Index, 10)+"]") {
				at = j
			}
		}
		if at < 0 || !strings.Contains(strings.Join(lines[at:min(at+2, len(lines))], "\n"), want) {
			t.Errorf("item %d's line does not link %s:\n%s", i, want, m.Text)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(m.Text), "https://mamori.example.jp:8443/notifications") {
		t.Errorf("the 通知 link does not end the message:\n%s", m.Text)
	}
}
