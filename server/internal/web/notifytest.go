package web

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/mamori/mamori/server/internal/notify"
)

// handleTestSend sends a test message through the stored relay (to the
// addresses typed) or one stored webhook, through notify.SendTest, the
// code behind POST /api/v1/notifications/test. Success goes back to the
// page with a flash (a reload must not send again); a refusal or a failed
// send is said beside the channel's test form with the addresses kept.
func (u *UI) handleTestSend(w http.ResponseWriter, r *http.Request) {
	var req notify.TestRequest
	key := "mail"
	typed := r.PostFormValue("mail")
	if hook := r.PostFormValue("webhook"); hook != "" {
		req.Webhook, key = hook, "webhook:"+hook
	} else {
		req.Mail = split(typed)
	}
	err := u.cfg.Alerting.Notifier.SendTest(r.Context(), sessionFrom(r.Context()).Name, "web", req)
	say := func(status int, msg string) {
		u.refuse(w, r, status, func(v *notifyView) {
			// A webhook removed since the page was loaded has no panel:
			// say it above the channels.
			if req.Webhook != "" && !slices.ContainsFunc(v.Hooks, func(h hookForm) bool { return h.Original == req.Webhook }) {
				key = ""
			}
			v.TestErr[key] = msg
			v.TestMail = typed
		})
	}
	switch {
	case errors.Is(err, notify.ErrInvalid) && key == "mail" && len(req.Mail) == 0:
		say(http.StatusBadRequest, "テストメッセージの宛先 (メールアドレス) を入力してください。")
	case errors.Is(err, notify.ErrInvalid):
		say(http.StatusBadRequest, "テスト送信できません: "+testRefusalJA(err))
	case errors.Is(err, notify.ErrSendFailed):
		say(http.StatusBadGateway, "テストメッセージを送れませんでした: "+notify.ErrorJA(err.Error())+
			"。設定 (サーバー、ポート、暗号化、ユーザー名とパスワード、URL) を確かめてください。")
	case err != nil:
		u.internal(w, r, "test send", err)
	default:
		back(w, r, "/notifications", "tested")
	}
}

// testRefusalJA says in Japanese why notify refused a test request.
func testRefusalJA(err error) string {
	msg := strings.TrimPrefix(err.Error(), notify.ErrInvalid.Error()+": ")
	switch {
	case strings.Contains(msg, "is not a mail address"):
		return "メールアドレスの形が正しくありません (" + msg + ")"
	case strings.Contains(msg, "addresses for a test"):
		return "テストの宛先は 10 件までです"
	case strings.Contains(msg, "no SMTP relay"):
		return "SMTP サーバーが設定されていません。先に SMTP を保存してください"
	case strings.Contains(msg, "no longer configured"):
		return "その Webhook は今の設定にありません (" + msg + ")"
	}
	return msg
}
