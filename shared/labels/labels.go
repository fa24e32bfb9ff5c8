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
	Clause    Set = "clause"    // the policy packs' clause citations
	// Operation names what was done to files, by the file event type
	// without its "file." prefix: the keys of a bulk summary's counts.
	Operation Set = "operation"
	// Attribution says how a file change's user and process were found
	// (the attribution_source attribute).
	Attribution Set = "attribution"
)

// label is one code's names.
type label struct{ ja, en string }

// catalog holds every label; a code missing from a set is shown as is.
var catalog = map[Set]map[string]label{
	Attribution: {
		"observed":            {"OS が記録した操作", "Observed by the OS"},
		"last_writer":         {"直前にアクセスしたプロセス (推定)", "Last process to access it (inferred)"},
		"while_agent_stopped": {"エージェント停止中の変更 (ユーザー・プロセス不明)", "Changed while the agent was stopped (user and process unknown)"},
		"not_recorded":        {"記録できなかった間の変更 (ユーザー・プロセス不明)", "Changed while events could not be stored (user and process unknown)"},
	},
	Operation: {
		"created":  {"作成", "created"},
		"modified": {"変更", "modified"},
		"deleted":  {"削除", "deleted"},
		"renamed":  {"名前変更", "renamed"},
		"read":     {"読み取り", "read"},
	},
	Clause: {
		"METI GL password screensaver": {"旧 経済産業分野ガイドライン (パスワード付きスクリーンセーバーの設定)", "Former METI guideline (password-protected screensaver)"},
		"現地審査 バックアップ":                  {"プライバシーマーク現地審査の確認事項 (バックアップの実施)", "Privacy Mark on-site audit item (backups)"},
	},
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
		"incident":   {"事故・漏えい等", "Incidents"},
		"notify":     {"通知", "Notifications"},
		"admin":      {"管理操作", "Administration"},
	},
	EventType: {
		"notify.sent":                    {"通知の送信", "Notification sent"},
		"notify.attempt_failed":          {"通知の送信失敗 (再試行)", "Notification attempt failed (retrying)"},
		"notify.test_sent":               {"通知のテスト送信", "Test notification sent"},
		"notify.test_failed":             {"通知のテスト送信の失敗", "Test notification failed"},
		"notify.failed":                  {"通知の配信失敗", "Notification failed"},
		"notify.settings_changed":        {"通知設定の変更", "Notification settings changed"},
		"file.created":                   {"ファイル作成", "File created"},
		"file.modified":                  {"ファイル変更", "File modified"},
		"file.deleted":                   {"ファイル削除", "File deleted"},
		"file.renamed":                   {"ファイル名変更", "File renamed"},
		"file.read":                      {"ファイル閲覧", "File read"},
		"fileaccess.bulk":                {"大量コピー・大量操作", "Bulk file activity"},
		"fileaccess.overflow":            {"記録の取りこぼし", "Watcher overflow"},
		"fileaccess.error":               {"監視エラー", "File watch error"},
		"fileaccess.status":              {"ファイル監視の状態", "File access status"},
		"fileaccess.watching":            {"フォルダー監視開始", "Watching folder"},
		"media.inserted":                 {"媒体の接続", "Media inserted"},
		"media.removed":                  {"媒体の取り外し", "Media removed"},
		"media.allowed":                  {"媒体の使用許可", "Media allowed"},
		"media.blocked":                  {"媒体のブロック", "Media blocked"},
		"media.read_only":                {"媒体を読み取り専用に", "Media made read-only"},
		"media.enforced":                 {"媒体制御の適用", "Media control applied"},
		"media.enforce_failed":           {"媒体制御の失敗", "Media control failed"},
		"media.file_written":             {"媒体への書き込み", "File written to media"},
		"media.status":                   {"外部媒体の状態", "Media status"},
		"screenlock.status":              {"画面ロックの状態", "Screen lock status"},
		"screenlock.enforced":            {"画面ロック設定の適用", "Screen lock enforced"},
		"screenlock.enforce_failed":      {"画面ロック設定の失敗", "Screen lock enforce failed"},
		"screenlock.drift":               {"画面ロック設定の変更検知", "Screen lock drift"},
		"screenlock.locked":              {"画面ロック", "Screen locked"},
		"screenlock.unlocked":            {"画面ロック解除", "Screen unlocked"},
		"session.logon":                  {"ログオン", "Logon"},
		"session.logoff":                 {"ログオフ", "Logoff"},
		"backup.completed":               {"バックアップ完了", "Backup completed"},
		"backup.failed":                  {"バックアップ失敗", "Backup failed"},
		"backup.overdue":                 {"バックアップ期限切れ", "Backup overdue"},
		"backup.corrupt":                 {"バックアップ破損", "Backup corrupt"},
		"backup.pruned":                  {"古い世代の削除", "Old backups pruned"},
		"backup.status":                  {"バックアップの状態", "Backup status"},
		"backup.generations_missing":     {"バックアップ世代の消失", "Backup generations missing"},
		"posture.status":                 {"端末の状態", "Posture status"},
		"agent.started":                  {"エージェント起動", "Agent started"},
		"agent.stopping":                 {"エージェント停止", "Agent stopping"},
		"agent.heartbeat":                {"死活通知", "Heartbeat"},
		"agent.inventory":                {"端末情報", "Inventory"},
		"agent.enrolled":                 {"エージェント登録", "Agent enrolled"},
		"agent.dropped":                  {"記録の破棄（容量超過）", "Events dropped (spool full)"},
		"agent.policy_applied":           {"ポリシー適用", "Policy applied"},
		"agent.policy_failed":            {"ポリシー適用失敗", "Policy failed"},
		"agent.policy_tampered":          {"保存ポリシーの改ざん検知", "Saved policy tampered"},
		"agent.control_failed":           {"管理策の異常", "Control failed"},
		"agent.department":               {"部署の変更", "Department changed"},
		"agent.disabled":                 {"エージェント無効化", "Agent disabled"},
		"agent.enabled":                  {"エージェント有効化", "Agent enabled"},
		"agent.outage":                   {"エージェントの停止期間", "Agent outage"},
		"agent.tamper_suspected":         {"改ざん・偽装の疑い", "Suspected tampering"},
		"compliance.alert":               {"準拠状況の警告", "Compliance alert"},
		"register.created":               {"台帳登録", "Register entry created"},
		"register.updated":               {"台帳更新", "Register entry updated"},
		"register.retired":               {"台帳廃止", "Register entry retired"},
		"register.approved":              {"持出し承認", "Carry-out approved"},
		"register.denied":                {"持出し却下", "Carry-out denied"},
		"register.returned":              {"持出し返却", "Carry-out returned"},
		"register.imported":              {"台帳取り込み", "Register imported"},
		"export.made":                    {"証跡エクスポート", "Export made"},
		"policy.updated":                 {"ポリシー更新", "Policy updated"},
		"policy.assigned":                {"ポリシー割り当て", "Policy assigned"},
		"token.created":                  {"登録トークン発行", "Token created"},
		"token.revoked":                  {"トークン失効", "Token revoked"},
		"user.created":                   {"ユーザー追加", "User created"},
		"user.changed":                   {"ユーザー変更", "User changed"},
		"user.password_changed":          {"パスワード変更", "Password changed"},
		"user.password_change_failed":    {"パスワード変更の失敗", "Password change refused"},
		"ui.login":                       {"ログイン", "Login"},
		"ui.logout":                      {"ログアウト", "Logout"},
		"ui.login_failed":                {"ログイン失敗", "Login failed"},
		"retention.pruned":               {"保存期間切れの削除", "Retention pruned"},
		"server.gap":                     {"記録の欠落", "Gap in agent log"},
		"server.clock_skew":              {"端末の時計のずれ", "Agent clock skew"},
		"server.clock_rewound":           {"端末の時計の巻き戻り", "Agent clock rewound"},
		"server.event_loss_accepted":     {"欠落の承認", "Event loss accepted"},
		"server.scrub_failed":            {"ログの再検証で不一致", "Log re-check mismatch"},
		"server.heads_rebuilt":           {"記録の先頭情報の再構築", "Stream heads rebuilt"},
		"incident.opened":                {"事故の記録", "Incident opened"},
		"incident.updated":               {"事故の更新", "Incident updated"},
		"incident.overdue":               {"漏えい等報告の期限超過", "Breach report overdue"},
		"server.writer_started":          {"記録の開始 (サーバー)", "Server started recording"},
		"server.writer_stopped":          {"記録の停止 (サーバー)", "Server stopped recording"},
		"server.unclean_stop":            {"サーバーの異常停止", "Server stopped unrecorded"},
		"server.checkpoint_copy_missing": {"チェックポイントの控えがない起動", "Started without the checkpoint copy"},
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
		"old_path":           {"変更前のパス", "Previous path"},
		"moved_to":           {"移動先", "Moved to"},
		"write_failed":       {"ディスクが書き込みを拒否した件数", "Refused by the disk"},
		"modified":           {"書き込みあり", "Written to"},
		"transient":          {"一時ファイル（作成から削除まで集計期間内）", "Transient (created and deleted within the window)"},
		"times_restored":     {"書き込み後に日時が元に戻された", "Written, then its times put back"},
		"ctime_only":         {"変更日時 (ctime) だけが変わった", "Only its change time (ctime) moved"},
		"unlinked":           {"読み取り中に置き換え・削除されたファイル", "Replaced or deleted while open"},
		"ops":                {"操作の内訳（回数）", "Operations (count)"},
		"ip":                 {"IPアドレス", "IP address"},
		"role":               {"役割", "Role"},
		// Agents and their lifecycle.
		"agent":           {"エージェント", "Agent"},
		"agents":          {"エージェント（一覧）", "Agents"},
		"hostname":        {"端末名", "Host name"},
		"department":      {"部署", "Department"},
		"os":              {"OS", "OS"},
		"arch":            {"アーキテクチャ", "Architecture"},
		"cert_serial":     {"証明書のシリアル番号", "Certificate serial"},
		"previous_serial": {"以前の証明書のシリアル番号", "Previous certificate serial"},
		"not_after":       {"証明書の有効期限", "Certificate valid until"},
		"enroll_token_id": {"登録トークンID", "Enrollment token"},
		"policy_version":  {"ポリシーの版", "Policy version"},
		"stored_version":  {"保存されていたポリシーの版", "Stored policy version"},
		"actual_version":  {"実際の内容の版（変更されていた）", "Actual content's version (altered)"},
		"name":            {"名前", "Name"},
		"restarts":        {"再起動回数", "Restarts"},
		"cpu_percent":     {"CPU使用率（%）", "CPU (%)"},
		"rss_bytes":       {"メモリ使用量（バイト）", "Memory (bytes)"},
		"spool_depth":     {"未送信のイベント数", "Events not yet sent"},
		"uptime":          {"稼働時間（秒）", "Uptime (s)"},
		"uptime_s":        {"停止までの稼働時間（秒）", "Uptime at stop (s)"},
		"previous_seq":    {"前回の最後の連番", "Previous last seq"},
		"previous_type":   {"前回の最後の種別", "Previous last type"},
		"previous_time":   {"前回の最後の日時", "Previous last time"},
		"clean_stop":      {"正常に停止した", "Stopped cleanly"},
		"started_seq":     {"再開時の連番", "Seq at restart"},
		"duration_s":      {"期間（秒）", "Duration (s)"},
		"until":           {"終了日時", "Until"},
		"n":               {"番号", "Number"},
		// Streams, gaps and the log.
		"seq":               {"連番", "Seq"},
		"from_seq":          {"欠落の最初の連番", "Missing from seq"},
		"to_seq":            {"欠落の最後の連番", "Missing to seq"},
		"time":              {"端末の日時", "Agent's time"},
		"received":          {"受信日時", "Received"},
		"skew":              {"時計のずれ", "Clock skew"},
		"latest_time":       {"それまでの最新の端末日時", "Latest agent time before"},
		"rewind":            {"時計の戻り幅", "Clock rewound by"},
		"streams":           {"ストリーム数", "Streams"},
		"tree_size":         {"ログのサイズ（件）", "Log size (events)"},
		"links":             {"連鎖の確認数", "Chain links"},
		"store_events":      {"イベントストアの件数", "Events in the store"},
		"checkpoint_events": {"チェックポイントの件数", "Events in the checkpoint"},
		"checkpoint_root":   {"チェックポイントのルートハッシュ", "Checkpoint root"},
		"lost_events":       {"失われたイベント数", "Events lost"},
		"problem":           {"見つかった問題", "Problem found"},
		"cutoff":            {"削除の基準日時", "Cut-off"},
		"keep":              {"保存期間・世代数", "Kept"},
		// File access.
		"audit_policy":        {"監査ポリシー", "Audit policy"},
		"attribution_problem": {"特定できなかった理由", "Attribution problem"},
		"fanotify_marks":      {"監視の対象（fanotify）", "Watched by fanotify"},
		"suppressed":          {"まとめた件数", "Merged"},
		"counts":              {"種別ごとの件数", "Counts by type"},
		"individually":        {"個別に記録した件数", "Recorded one by one"},
		"from":                {"開始", "From"},
		"to":                  {"終了", "To"},
		"summary":             {"概要", "Summary"},
		"reconciled":          {"再走査で見つかった変更", "Found by rescanning"},
		"path_encoding":       {"パスの表記（escaped: UTF-8 でないバイトを \\xNN で表記）", "Path encoding (escaped: bytes that are not UTF-8 as \\xNN)"},
		"note_ja":             {"説明", "Note (Japanese)"},
		"note_en":             {"説明（英語）", "Note"},

		// File access: removals never merged into a bulk summary, the watched folder moved.
		"totals":                {"種別ごとの合計（個別に記録した分を含む）", "Totals by type (including those recorded one by one)"},
		"removals_individually": {"個別に記録した削除・移動・名前変更の件数", "Deletions, moves and renames recorded one by one"},
		"removed_in":            {"まとめた削除・移動のフォルダー別件数（配下を含む）", "Merged deletions and moves by folder (and below)"},
		"moved_out_to":          {"まとめた持ち出しの移動先フォルダー別件数（配下を含む）", "Merged moves out by destination folder (and below)"},
		"watched_folder":        {"監視対象フォルダーそのもの", "The watched folder itself"},
		"contents":              {"フォルダーとともに無くなった件数（移動など）", "Entries gone with the folder (moved with it)"},
		"moved_with":            {"一緒に移動したフォルダー", "Moved with folder"},
		// File access: the watched folder's path replaced (swap.go).
		"lost_at":     {"監視対象フォルダーを見失った日時", "Lost at"},
		"folder_id":   {"監視していたフォルダーの識別子", "Watched folder's ID"},
		"replaced_by": {"パスにあるもの（置き換え後）", "Replaced by"},
		"now_id":      {"置き換え後の識別子", "ID now at the path"},
		"link_target": {"リンク先", "Link target"},
		// Media.
		"serial_generated": {"シリアル番号はOSが生成", "Serial made up by the OS"},
		"capacity_bytes":   {"容量（バイト）", "Capacity (bytes)"},
		"fs":               {"ファイルシステム", "File system"},
		"bus":              {"接続方式", "Bus"},
		"mount_points":     {"マウント先", "Mount points"},
		"devices":          {"接続中の媒体数", "Devices attached"},
		"deny_read":        {"読み取り禁止", "Deny read"},
		"deny_write":       {"書き込み禁止", "Deny write"},
		"enforcement":      {"強制の方法", "Enforced by"},
		"file":             {"ファイル", "File"},
		// Screen lock.
		"max_idle":   {"アイドル時間の上限", "Maximum idle"},
		"targets":    {"対象数", "Targets"},
		"scope":      {"範囲", "Scope"},
		"id":         {"ID", "ID"},
		"set":        {"設定した値", "Set"},
		"found":      {"設定前の値", "Found"},
		"session_id": {"セッションID", "Session ID"},
		// Screen lock: settings written but not in effect, why nothing was judged.
		"written": {"書き込んだ値（未反映）", "Written (not in effect)"},
		"detail":  {"詳細", "Detail"},
		// Backup.
		"files":           {"ファイル数", "Files"},
		"bytes":           {"バイト数", "Bytes"},
		"copied":          {"コピーしたファイル数", "Copied"},
		"linked":          {"前世代から引き継いだファイル数", "Linked to the previous generation"},
		"vanished":        {"コピー中に消えたファイル数", "Vanished while copying"},
		"manifest_sha256": {"目録のSHA-256", "Manifest SHA-256"},
		"duration_ms":     {"所要時間（ミリ秒）", "Duration (ms)"},
		"register_ids":    {"台帳ID（一覧）", "Register IDs"},
		"checked":         {"確認したファイル数", "Checked"},
		"paths":           {"パス（一覧）", "Paths"},
		"newest":          {"最新のバックアップ", "Newest backup"},
		"age_seconds":     {"経過時間（秒）", "Age (s)"},
		"method":          {"方式", "Method"},
		"disk_full":       {"ディスクの空き不足", "Disk full"},
		// Backup: how unchanged files were linked, the destination, generations gone.
		"linked_unverified":   {"大きさと更新日時だけで引き継いだファイル数", "Linked on size and mtime only"},
		"compared":            {"内容を照合したファイル数", "Compared by content"},
		"generations":         {"世代（一覧）", "Generations"},
		"remaining":           {"残っている世代数", "Generations remaining"},
		"first_written":       {"初回の書き込み", "First written"},
		"same_device":         {"対象と同じディスク", "On the same disk as a source"},
		"same_device_sources": {"同じディスク上の対象フォルダー", "Sources on the same disk"},
		// Administration, alerts and incidents.
		"expires":          {"有効期限", "Expires"},
		"uses":             {"使用回数", "Uses"},
		"path":             {"パス", "Path"},
		"disabled":         {"無効化", "Disabled"},
		"password_reset":   {"パスワードの再設定", "Password reset"},
		"entries":          {"出力件数", "Entries"},
		"lang":             {"言語", "Language"},
		"encoding":         {"文字コード", "Encoding"},
		"hosts":            {"端末数", "Hosts"},
		"users":            {"ユーザー（一覧）", "Users"},
		"local_users":      {"PC にログオン中のユーザー", "Users logged on at the PC"},
		"same_hostname_as": {"同じ PC 名で登録済みのエージェント", "Agents already enrolled with this host name"},
		"attempts":         {"試行回数", "Attempts"},
		"attempt":          {"何回目の試行", "Attempt"},
		"rule":             {"ルール", "Rule"},
		"rules":            {"ルール数", "Rules"},
		"webhook":          {"Webhook", "Webhook"},
		"webhooks":         {"Webhook数", "Webhooks"},
		"smtp":             {"メール（SMTP）設定", "SMTP"},
		"subject":          {"件名", "Subject"},
		"items":            {"通知した項目", "Items"},
		"text":             {"本文", "Message text"},
		"first":            {"最初の発生", "First"},
		"last":             {"最後の発生", "Last"},
		"resend_of":        {"再送した配信（ログ番号）", "Re-send of (log index)"},
		"change":           {"変更", "Change"},
		"changed":          {"変更した項目", "Changed"},
		"cause":            {"この変更のもとになった記録", "Caused by"},
		"hours":            {"勤務時間", "Working hours"},
		"days_off":         {"休日", "Days off"},
		"renamed_from":     {"変更前の名前", "Previous name"},
		"key":              {"アラートキー", "Alert key"},
		"alert_index":      {"アラートのログ番号", "Alert's log index"},
		"alert_type":       {"アラートの種類", "Alert type"},
		"source":           {"きっかけ", "Source"},
		"affected":         {"関係する台帳", "Affected entries"},
		"persons":          {"本人の数", "Persons"},
		"deadline":         {"期限", "Deadline"},
		"report":           {"報告", "Report"},
		"recipients":       {"宛先数", "Recipients"},
		"security":         {"暗号化の方式", "Security"},
		"title":            {"件名（事故）", "Title"},
		"control":          {"管理策", "Control"},
		"index":            {"状態イベントのログ番号", "Status event's log index"},
		"window_from":      {"記録できなかった期間の開始", "Unrecorded from"},
		"window_to":        {"記録できなかった期間の終了", "Unrecorded until"},
		"folders":          {"監視フォルダー数", "Folders watched"},
		"failing":          {"違反の内訳", "Failing"},
		"approval_id":      {"持出し承認ID", "Carry-out approval"},
		"register_id":      {"台帳ID", "Register ID"},
		"serial":           {"シリアル番号", "Serial"},
		"vendor_id":        {"ベンダーID", "Vendor ID"},
		"product_id":       {"製品ID", "Product ID"},
		"product":          {"製品名", "Product"},
		"vendor":           {"メーカー", "Vendor"},
		"encrypted":        {"暗号化", "Encrypted"},
		"size":             {"サイズ", "Size"},
		"count":            {"件数", "Count"},
		"total":            {"合計", "Total"},
		"threshold":        {"しきい値", "Threshold"},
		"window":           {"集計期間", "Window"},
		"action":           {"処置", "Action"},
		"mode":             {"モード", "Mode"},
		"error":            {"エラー", "Error"},
		"destination":      {"バックアップ先", "Destination"},
		"generation":       {"世代", "Generation"},
		"max_age":          {"許容期間", "Maximum age"},
		"volume":           {"ボリューム", "Volume"},
		"watched_dirs":     {"監視中のディレクトリ数", "Watched directories"},
		"processes":        {"プロセス", "Processes"},
		"via":              {"操作経路", "Via"},
		"format":           {"形式", "Format"},
		"query":            {"検索条件", "Query"},
		"events":           {"イベント数", "Events"},
		"clauses":          {"根拠条項", "Clauses"},
		"kind":             {"種類", "Kind"},
		"version":          {"版", "Version"},
		"revision":         {"リビジョン", "Revision"},
		"before":           {"変更前", "Before"},
		"after":            {"変更後", "After"},
		"entry_sha256":     {"変更後の台帳項目の SHA-256", "SHA-256 of the entry after"},
		"comment":          {"コメント", "Comment"},
		"policy":           {"ポリシー", "Policy"},
		"host":             {"端末", "Host"},
		"user":             {"ユーザー", "User"},
		"state":            {"状態（詳細）", "State"},
		"checks":           {"確認項目ごとの結果", "Result per check"},
		// Posture's checks (keys of "checks"), shown one row each on a PC's page.
		"disk_encryption": {"ディスクの暗号化", "Disk encryption"},
		"antivirus":       {"ウイルス対策", "Anti-virus"},
		"os_update":       {"OSの更新", "OS updates"},
		"firewall":        {"ファイアウォール", "Firewall"},
		"none_since":      {"この日時以降、更新の記録なし", "No update recorded since"},
		// server.writer_started, server.writer_stopped, server.unclean_stop
		"node":             {"サーバー", "Server"},
		"epoch":            {"記録者の世代 (epoch)", "Writer epoch"},
		"previous_stop":    {"前回の停止", "Previous stop"},
		"log_events":       {"ログの件数", "Events in the log"},
		"last_record_seq":  {"最後の記録の番号", "Last record's seq"},
		"last_record_time": {"最後の記録の日時", "Last record's time"},
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
