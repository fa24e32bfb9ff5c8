package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
)

// The account page: each user changes their own password. An admin sets a
// new user's first password (and resets forgotten ones on ユーザー); the
// user then makes it one only they know, which an auditor's independence
// from the admins they audit needs.

func (u *UI) handleAccount(w http.ResponseWriter, r *http.Request) {
	u.accountPage(w, r, http.StatusOK, "")
}

// accountPage renders the page with errKey's message, if any.
func (u *UI) accountPage(w http.ResponseWriter, r *http.Request, status int, errKey string, detail ...string) {
	p := u.newPage(r, "account", "account_title")
	if errKey != "" {
		p.Err = strings.Join(append([]string{p.L[errKey]}, detail...), " ")
	}
	u.render(w, r, status, "account", p)
}

func (u *UI) handleChangePassword(w http.ResponseWriter, r *http.Request) {
	me := sessionFrom(r.Context())
	ip := clientIP(r)
	key := strings.ToLower(me.Name) + "\x00" + ip // the login's limit: a stolen session cannot guess on
	if !u.usrLimit.allowed(r.Context(), key) {
		u.accountPage(w, r, http.StatusTooManyRequests, "err_throttled")
		return
	}
	current, next := r.PostFormValue("current"), r.PostFormValue("password")
	if _, err := u.cfg.State.CheckPassword(r.Context(), me.Name, current); err != nil {
		if !errors.Is(err, state.ErrBadCredentials) {
			u.internal(w, r, "checking password", err)
			return
		}
		u.usrLimit.fail(r.Context(), key)
		u.record(r, me.Name, event.Event{Type: "user.password_change_failed", Object: "user/" + me.Name,
			Attrs: event.Attrs{"ip": ip, "reason": "wrong current password"}})
		u.accountPage(w, r, http.StatusUnauthorized, "err_current_password")
		return
	}
	switch {
	case next != r.PostFormValue("confirm"):
		u.accountPage(w, r, http.StatusBadRequest, "err_password_confirm")
		return
	case next == current:
		u.accountPage(w, r, http.StatusBadRequest, "err_password_same")
		return
	}
	if err := state.CheckPasswordPolicy(me.Name, next); err != nil {
		u.accountPage(w, r, http.StatusBadRequest, "err_password_policy", passwordPolicyText(err, langOf(r)))
		return
	}
	if _, err := u.cfg.State.UpdateUser(r.Context(), me.Name, state.UserChange{Password: &next}); err != nil {
		u.userFail(w, r, err)
		return
	}
	u.usrLimit.reset(r.Context(), key)
	// Every session of the user ends (one may be someone else's); this
	// browser gets a new one.
	if err := u.sessions.dropUser(r.Context(), me.Name); err != nil {
		u.log.Error().Err(err).Str("user", me.Name).Msg("web: sessions of a user who changed their password not ended in etcd (they end within 30 minutes idle)")
	}
	s, err := u.sessions.create(r.Context(), me.Name, me.Role)
	if err != nil {
		u.internal(w, r, "creating the session", err)
		return
	}
	setCookie(w, cookieSession, s.id, 0)
	u.record(r, me.Name, event.Event{Type: "user.password_changed", Object: "user/" + me.Name, Attrs: event.Attrs{"ip": ip}})
	back(w, r, "/account", "password_changed")
}

// passwordPolicyText says why a password was refused, in Japanese on a
// Japanese page.
func passwordPolicyText(err error, lang string) string {
	msg := err.Error()
	if i := strings.Index(msg, "password "); i >= 0 {
		msg = msg[i+len("password "):]
	}
	if lang != "ja" {
		return "The password " + msg + "."
	}
	for _, m := range []struct{ en, ja string }{
		{"must be at least", "12文字以上にしてください。"},
		{"must be at most", "128文字以内にしてください。"},
		{"control characters", "制御文字は使えません。"},
		{"common password with", "よく使われるパスワードに数字や記号を足したものは使えません。"},
		{"common or breached", "よく使われる、または漏えいしたパスワードの一覧にあります。"},
		{"user name", "ユーザー名を含めないでください。"},
	} {
		if strings.Contains(msg, m.en) {
			return m.ja
		}
	}
	return msg
}
