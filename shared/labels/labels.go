// Package labels is Mamori's message catalog for codes people read: event
// types, controls, severities, register kinds and statuses, and roles, each
// with a Japanese and an English label. The web UI, the CSV exports
// (lang=ja) and `mamori-server verify --lang ja` use it, so one code reads
// the same everywhere.
package labels

import "slices"

// Languages.
const (
	JA = "ja"
	EN = "en"
)

// Set names one group of codes.
type Set string

// The groups.
const (
	Control   Set = "control"
	EventType Set = "type"
	Severity  Set = "severity"
	Status    Set = "status"   // register entry statuses
	Register  Set = "register" // register kinds
	Role      Set = "role"
	Verdict   Set = "verdict" // compliance status of a control on a host
	Field     Set = "field"   // event fields (CSV headers, detail view)
	Attr      Set = "attr"    // common event attributes (detail view)
	YesNo     Set = "yesno"
	Remedy    Set = "remedy"    // what to do about a failing control (or "silent")
	Action    Set = "action"    // register history actions
	AlertKind Set = "alertkind" // kinds of alert and notification rule
)

// label is one code's names.
type label struct{ ja, en string }

// catalog holds every label; a code missing from a set is shown as is.
var catalog = map[Set]map[string]label{
	AlertKind: {
		"violation":          {"管理策違反", "Control violation"},
		"silent":             {"エージェント応答なし", "Agent silent"},
		"bulk_copy":          {"登録フォルダからの大量コピー", "Bulk copy from a registered folder"},
		"unregistered_media": {"未登録・未承認の媒体", "Unregistered or unapproved media"},
		"out_of_hours":       {"業務時間外のアクセス", "Access out of hours"},
		"backup_overdue":     {"バックアップ期限超過", "Backup overdue"},
		"log_integrity":      {"ログの完全性", "Log integrity"},
		"login_failures":     {"ログイン失敗の繰り返し", "Repeated login failures"},
		"incident_overdue":   {"漏えい等報告の期限超過", "Breach report overdue"},
	},
	Control: {
		"screenlock": {"画面ロック", "Screen lock"},
		"media":      {"外部媒体", "Removable media"},
		"fileaccess": {"ファイルアクセス", "File access"},
		"backup":     {"バックアップ", "Backup"},
		"posture":    {"端末の状態", "Posture"},
		"agent":      {"エージェント", "Agent"},
		"server":     {"サーバー", "Server"},
		"register":   {"台帳", "Registers"},
		"compliance": {"準拠状況", "Compliance"},
		"session":    {"ログオン", "Session"},
	},
	EventType: {
		"notify.sent":                {"通知の送信", "Notification sent"},
		"notify.attempt_failed":      {"通知の送信失敗 (再試行)", "Notification attempt failed (retrying)"},
		"notify.failed":              {"通知の配信失敗", "Notification failed"},
		"notify.settings_changed":    {"通知設定の変更", "Notification settings changed"},
		"file.created":               {"ファイル作成", "File created"},
		"file.modified":              {"ファイル変更", "File modified"},
		"file.deleted":               {"ファイル削除", "File deleted"},
		"file.renamed":               {"ファイル名変更", "File renamed"},
		"file.read":                  {"ファイル閲覧", "File read"},
		"fileaccess.bulk":            {"大量コピー・大量操作", "Bulk file activity"},
		"fileaccess.overflow":        {"記録の取りこぼし", "Watcher overflow"},
		"fileaccess.error":           {"監視エラー", "File watch error"},
		"fileaccess.status":          {"ファイル監視の状態", "File access status"},
		"fileaccess.watching":        {"フォルダー監視開始", "Watching folder"},
		"media.inserted":             {"媒体の接続", "Media inserted"},
		"media.removed":              {"媒体の取り外し", "Media removed"},
		"media.allowed":              {"媒体の使用許可", "Media allowed"},
		"media.blocked":              {"媒体のブロック", "Media blocked"},
		"media.read_only":            {"媒体を読み取り専用に", "Media made read-only"},
		"media.enforced":             {"媒体制御の適用", "Media control applied"},
		"media.enforce_failed":       {"媒体制御の失敗", "Media control failed"},
		"media.file_written":         {"媒体への書き込み", "File written to media"},
		"media.status":               {"外部媒体の状態", "Media status"},
		"screenlock.status":          {"画面ロックの状態", "Screen lock status"},
		"screenlock.enforced":        {"画面ロック設定の適用", "Screen lock enforced"},
		"screenlock.enforce_failed":  {"画面ロック設定の失敗", "Screen lock enforce failed"},
		"screenlock.drift":           {"画面ロック設定の変更検知", "Screen lock drift"},
		"screenlock.locked":          {"画面ロック", "Screen locked"},
		"screenlock.unlocked":        {"画面ロック解除", "Screen unlocked"},
		"session.logon":              {"ログオン", "Logon"},
		"session.logoff":             {"ログオフ", "Logoff"},
		"backup.completed":           {"バックアップ完了", "Backup completed"},
		"backup.failed":              {"バックアップ失敗", "Backup failed"},
		"backup.overdue":             {"バックアップ期限切れ", "Backup overdue"},
		"backup.corrupt":             {"バックアップ破損", "Backup corrupt"},
		"backup.pruned":              {"古い世代の削除", "Old backups pruned"},
		"backup.status":              {"バックアップの状態", "Backup status"},
		"posture.status":             {"端末の状態", "Posture status"},
		"agent.started":              {"エージェント起動", "Agent started"},
		"agent.stopping":             {"エージェント停止", "Agent stopping"},
		"agent.heartbeat":            {"死活通知", "Heartbeat"},
		"agent.inventory":            {"端末情報", "Inventory"},
		"agent.enrolled":             {"エージェント登録", "Agent enrolled"},
		"agent.dropped":              {"記録の破棄（容量超過）", "Events dropped (spool full)"},
		"agent.policy_applied":       {"ポリシー適用", "Policy applied"},
		"agent.policy_failed":        {"ポリシー適用失敗", "Policy failed"},
		"agent.control_failed":       {"管理策の異常", "Control failed"},
		"agent.department":           {"部署の変更", "Department changed"},
		"agent.disabled":             {"エージェント無効化", "Agent disabled"},
		"agent.enabled":              {"エージェント有効化", "Agent enabled"},
		"compliance.alert":           {"準拠状況の警告", "Compliance alert"},
		"register.created":           {"台帳登録", "Register entry created"},
		"register.updated":           {"台帳更新", "Register entry updated"},
		"register.retired":           {"台帳廃止", "Register entry retired"},
		"register.approved":          {"持出し承認", "Carry-out approved"},
		"register.denied":            {"持出し却下", "Carry-out denied"},
		"register.returned":          {"持出し返却", "Carry-out returned"},
		"register.imported":          {"台帳取り込み", "Register imported"},
		"export.made":                {"証跡エクスポート", "Export made"},
		"policy.updated":             {"ポリシー更新", "Policy updated"},
		"policy.assigned":            {"ポリシー割り当て", "Policy assigned"},
		"token.created":              {"登録トークン発行", "Token created"},
		"token.revoked":              {"トークン失効", "Token revoked"},
		"user.created":               {"ユーザー追加", "User created"},
		"user.changed":               {"ユーザー変更", "User changed"},
		"ui.login":                   {"ログイン", "Login"},
		"ui.logout":                  {"ログアウト", "Logout"},
		"ui.login_failed":            {"ログイン失敗", "Login failed"},
		"retention.pruned":           {"保存期間切れの削除", "Retention pruned"},
		"server.gap":                 {"記録の欠落", "Gap in agent log"},
		"server.event_loss_accepted": {"欠落の承認", "Event loss accepted"},
	},
	Severity: {
		"info":      {"情報", "Info"},
		"warning":   {"警告", "Warning"},
		"violation": {"違反", "Violation"},
	},
	Status: {
		"active":    {"有効", "Active"},
		"retired":   {"廃止", "Retired"},
		"lost":      {"紛失", "Lost"},
		"disposed":  {"廃棄済", "Disposed"},
		"requested": {"申請中", "Requested"},
		"approved":  {"承認済み", "Approved"},
		"denied":    {"却下", "Denied"},
		"returned":  {"返却済み", "Returned"},
		"expired":   {"期限切れ", "Expired"},
		// incidents (事故・漏えい等)
		"open":                 {"対応中", "Open"},
		"preliminary_reported": {"速報済み", "Preliminary report made"},
		"final_reported":       {"確報済み", "Final report made"},
		"closed":               {"完了", "Closed"},
	},
	Register: {
		"pi":        {"個人情報管理台帳", "Personal information register"},
		"media":     {"媒体管理台帳", "Media register"},
		"approvals": {"持出し承認", "Carry-out approvals"},
		"disposals": {"廃棄記録", "Disposal records"},
	},
	Role: {
		"admin":   {"システム管理者", "Administrator"},
		"manager": {"個人情報保護管理者", "Privacy manager"},
		"auditor": {"内部監査責任者", "Internal auditor"},
	},
	Verdict: {
		"pass":    {"準拠", "Pass"},
		"fail":    {"違反", "Fail"},
		"warning": {"要確認", "Warning"},
		"unknown": {"不明", "Unknown"},
		"off":     {"対象外", "Off"},
	},
	Field: {
		"index":       {"ログ番号", "Log index"},
		"time":        {"日時", "Time"},
		"agent":       {"端末", "PC"},
		"agent_id":    {"エージェントID", "Agent ID"},
		"control":     {"管理策", "Control"},
		"type":        {"種別", "Type"},
		"severity":    {"重要度", "Severity"},
		"user":        {"ユーザー", "User"},
		"process":     {"プロセス", "Process"},
		"object":      {"対象", "Object"},
		"register_id": {"台帳ID", "Register ID"},
		"attrs":       {"属性", "Attributes"},
		"hash":        {"ハッシュ", "Hash"},
		"seq":         {"連番", "Sequence"},
		"prev":        {"直前のハッシュ", "Previous hash"},
		"received":    {"受信日時", "Received"},
	},
	Remedy: {
		"screenlock": {"端末の画面ロック時間をポリシー以内にし、復帰時のパスワードを有効にしてください（ポリシーが enforce なら自動で直ります）。", "Set the idle lock within the policy and require a password on resume (enforce mode fixes it)."},
		"media":      {"未登録の媒体を取り外し、使うなら媒体管理台帳に登録するか持出し承認を申請してください。", "Remove the unregistered device; register it in the media register or request a carry-out approval."},
		"fileaccess": {"対象フォルダーの監視を確認し、大量コピーなら利用者に目的を確認して記録してください。", "Check the folder watch; for a bulk copy, ask the user why and record it."},
		"backup":     {"バックアップ先の接続と容量を確認し、バックアップを実行し直してください。", "Check the backup destination and run the backup again."},
		"posture":    {"ディスク暗号化・ウイルス対策・OS更新を確認し、不足していれば設定してください。", "Check disk encryption, anti-virus and OS updates; fix what is missing."},
		"agent":      {"端末の電源とネットワーク、エージェントのサービスが動いているかを確認してください。", "Check the PC is on and online and the agent service runs."},
		"silent":     {"端末の電源とネットワーク、エージェントのサービスが動いているかを確認してください。", "Check the PC is on and online and the agent service runs."},
	},
	YesNo: {"yes": {"有", "Yes"}, "no": {"無", "No"}},
	Action: {
		"created":  {"登録", "Created"},
		"updated":  {"更新", "Updated"},
		"retired":  {"廃止", "Retired"},
		"approved": {"承認", "Approved"},
		"denied":   {"却下", "Denied"},
		"returned": {"返却", "Returned"},
		"imported": {"取り込み", "Imported"},
	},
	Attr: {
		"status":             {"状態", "Status"},
		"reason":             {"理由（コード）", "Reason (code)"},
		"reason_ja":          {"理由", "Reason (Japanese)"},
		"reason_en":          {"理由（英語）", "Reason"},
		"since":              {"発生日時", "Since"},
		"attribution":        {"ユーザー・プロセスの特定", "Attribution"},
		"attribution_source": {"ユーザー・プロセスの特定方法", "Attribution source"},
		"access_mask":        {"アクセス種別（OSの値）", "Access mask"},
		"dir":                {"フォルダー", "Folder"},
		"pid":                {"プロセスID", "Process ID"},
		"names":              {"名前の変遷", "Names"},
		"deleted_as":         {"削除時の名前", "Deleted as"},
		"modified":           {"書き込みあり", "Written to"},
		"transient":          {"一時ファイル（作成から削除まで集計期間内）", "Transient (created and deleted within the window)"},
		"ops":                {"操作の内訳（回数）", "Operations (count)"},
		"ip":                 {"IPアドレス", "IP address"},
		"role":               {"役割", "Role"},
		"folders":            {"監視フォルダー数", "Folders watched"},
		"failing":            {"違反の内訳", "Failing"},
		"approval_id":        {"持出し承認ID", "Carry-out approval"},
		"register_id":        {"台帳ID", "Register ID"},
		"serial":             {"シリアル番号", "Serial"},
		"vendor_id":          {"ベンダーID", "Vendor ID"},
		"product_id":         {"製品ID", "Product ID"},
		"product":            {"製品名", "Product"},
		"vendor":             {"メーカー", "Vendor"},
		"encrypted":          {"暗号化", "Encrypted"},
		"size":               {"サイズ", "Size"},
		"count":              {"件数", "Count"},
		"total":              {"合計", "Total"},
		"threshold":          {"しきい値", "Threshold"},
		"window":             {"集計期間", "Window"},
		"action":             {"処置", "Action"},
		"mode":               {"モード", "Mode"},
		"error":              {"エラー", "Error"},
		"destination":        {"バックアップ先", "Destination"},
		"generation":         {"世代", "Generation"},
		"max_age":            {"許容期間", "Maximum age"},
		"volume":             {"ボリューム", "Volume"},
		"watched_dirs":       {"監視中のディレクトリ数", "Watched directories"},
		"processes":          {"プロセス", "Processes"},
		"via":                {"操作経路", "Via"},
		"format":             {"形式", "Format"},
		"query":              {"検索条件", "Query"},
		"events":             {"イベント数", "Events"},
		"clauses":            {"根拠条項", "Clauses"},
		"kind":               {"種類", "Kind"},
		"version":            {"版", "Version"},
		"revision":           {"リビジョン", "Revision"},
		"comment":            {"コメント", "Comment"},
		"policy":             {"ポリシー", "Policy"},
		"host":               {"端末", "Host"},
		"user":               {"ユーザー", "User"},
		"state":              {"状態（詳細）", "State"},
	},
}

// Of returns code's label in lang (ja unless "en"), or code itself when the
// catalog does not know it, so a new code is never hidden.
func Of(s Set, lang, code string) string {
	l, ok := catalog[s][code]
	if !ok {
		return code
	}
	if lang == EN {
		return l.en
	}
	return l.ja
}

// Known reports whether the catalog has a label for code.
func Known(s Set, code string) bool { _, ok := catalog[s][code]; return ok }

// Codes lists the codes of a set, sorted.
func Codes(s Set) []string {
	out := make([]string, 0, len(catalog[s]))
	for c := range catalog[s] {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// Code finds the code whose label (in either language) or code is v, so a
// filter typed or linked as 「ファイルアクセス」 means fileaccess. It returns v
// unchanged when nothing matches.
func Code(s Set, v string) string {
	if _, ok := catalog[s][v]; ok {
		return v
	}
	for c, l := range catalog[s] {
		if v == l.ja || v == l.en {
			return c
		}
	}
	return v
}
