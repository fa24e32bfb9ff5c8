package web

import (
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mamori/mamori/server/internal/state"
	"github.com/mamori/mamori/shared/event"
)

// tokenMessages are the texts of the tokens page, merged into messages.
var tokenMessages = map[string]map[string]string{
	"ja": {"nav_tokens": "トークン", "tok_kind": "種類", "tok_kind_enroll": "登録用", "tok_kind_api": "API",
		"tok_name": "利用者・スクリプト", "tok_expires": "有効期限", "tok_uses": "残り回数", "tok_never": "無期限",
		"tok_expired": "期限切れ", "tok_used_up": "使用回数切れ", "tok_valid": "有効", "tok_revoke": "失効", "tok_new_api": "API トークンを発行（人・スクリプト用）",
		"tok_days": "有効日数", "tok_created_once": "このトークンは一度だけ表示されます。今すぐ安全な場所に保存してください。",
		"tok_hint":      "監査担当・管理責任者用のトークンは読み取り専用です。トークンを使った操作はすべてサーバーのイベントとして記録されます。",
		"token_revoked": "トークンを失効させました。"},
	"en": {"nav_tokens": "Tokens", "tok_kind": "Kind", "tok_kind_enroll": "Enrollment", "tok_kind_api": "API",
		"tok_name": "Person or script", "tok_expires": "Expires", "tok_uses": "Uses left", "tok_never": "never",
		"tok_expired": "expired", "tok_used_up": "used up", "tok_valid": "valid", "tok_revoke": "Revoke", "tok_new_api": "New API token (for a person or script)",
		"tok_days": "Valid for (days)", "tok_created_once": "This token is shown only this once: store it safely now.",
		"tok_hint":      "Auditor and manager tokens are read-only. Every use of a token is recorded as a server event.",
		"token_revoked": "Token revoked."},
}

func init() {
	for lang, m := range tokenMessages {
		for k, v := range m {
			messages[lang][k] = v
		}
	}
}

// tokenRow is one row of the tokens page.
type tokenRow struct {
	ID, Kind, Name, Role, CreatedBy string
	Created                         time.Time
	Expires                         *time.Time
	UsesLeft                        *int
	Expired                         bool
	UsedUp                          bool // every use spent before it expired: mint more uses, not a longer life
}

type tokensData struct {
	Tokens []tokenRow
	Roles  []string
	New    string // the plaintext of a token just created, shown once
	NewID  string
}

func (u *UI) tokensPage(w http.ResponseWriter, r *http.Request, status int, d tokensData) {
	ctx := r.Context()
	et, err := u.cfg.State.ListEnrollTokens(ctx)
	if err != nil {
		u.internal(w, r, "listing tokens", err)
		return
	}
	at, err := u.cfg.State.ListAPITokens(ctx)
	if err != nil {
		u.internal(w, r, "listing tokens", err)
		return
	}
	now := u.cfg.Now()
	for _, t := range et {
		exp, left := t.Expires, t.UsesLeft
		d.Tokens = append(d.Tokens, tokenRow{ID: t.ID, Kind: "enroll", CreatedBy: t.CreatedBy, Created: t.Created,
			Expires: &exp, UsesLeft: &left, Expired: !now.Before(t.Expires), UsedUp: now.Before(t.Expires) && t.UsesLeft <= 0})
	}
	for _, t := range at {
		row := tokenRow{ID: t.ID, Kind: "api", Name: t.Name, Role: t.Role, CreatedBy: t.CreatedBy, Created: t.Created}
		if !t.Expires.IsZero() {
			exp := t.Expires
			row.Expires, row.Expired = &exp, !now.Before(t.Expires)
		}
		d.Tokens = append(d.Tokens, row)
	}
	sort.Slice(d.Tokens, func(i, j int) bool { return d.Tokens[i].Created.After(d.Tokens[j].Created) })
	d.Roles = []string{state.RoleAuditor, state.RoleManager, state.RoleAdmin}
	p := u.newPage(r, "tokens", "nav_tokens")
	p.Data = d
	u.render(w, r, status, "tokens", p)
}

func (u *UI) handleTokens(w http.ResponseWriter, r *http.Request) {
	u.tokensPage(w, r, http.StatusOK, tokensData{})
}

// handleCreateToken makes an expiring API token for a person and shows its
// plaintext once, on this answer only (no redirect that could cache it).
func (u *UI) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	name, role := strings.TrimSpace(r.PostFormValue("name")), r.PostFormValue("role")
	days, err := strconv.Atoi(r.PostFormValue("days"))
	if err != nil || days < 1 || days > 366 {
		u.fail(w, r, http.StatusBadRequest, "err_invalid", "days: 1 to 366")
		return
	}
	me := sessionFrom(r.Context()).Name
	plain, tok, err := u.cfg.State.CreatePersonToken(r.Context(), name, role, time.Duration(days)*24*time.Hour, me)
	if err != nil {
		u.userFail(w, r, err)
		return
	}
	u.record(r, me, event.Event{Type: "token.created", Object: "api-token/" + tok.ID, Attrs: event.Attrs{
		"id": tok.ID, "kind": "api", "name": tok.Name, "role": tok.Role, "expires": tok.Expires.UTC().Format(time.RFC3339)}})
	u.tokensPage(w, r, http.StatusCreated, tokensData{New: plain, NewID: tok.ID})
}

// handleRevokeToken revokes an enrollment or API token at once.
func (u *UI) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	kind := "enroll-token"
	err := u.cfg.State.RevokeEnrollToken(r.Context(), id)
	if errors.Is(err, state.ErrNotFound) {
		kind = "api-token"
		err = u.cfg.State.RevokeAPIToken(r.Context(), id)
	}
	if err != nil {
		u.userFail(w, r, err)
		return
	}
	u.record(r, sessionFrom(r.Context()).Name, event.Event{Type: "token.revoked", Severity: event.Warning,
		Object: kind + "/" + id, Attrs: event.Attrs{"id": id, "kind": kind}})
	back(w, r, "/tokens", "token_revoked")
}
