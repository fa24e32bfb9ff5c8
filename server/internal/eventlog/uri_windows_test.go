package eventlog

import "testing"

func TestSQLiteURIWindows(t *testing.T) {
	for in, want := range map[string]string{
		`C:\ProgramData\Mamori\events.db`: "file:///C:/ProgramData/Mamori/events.db",
		`D:\data dir\イベント#1.db`:           "file:///D:/data%20dir/%E3%82%A4%E3%83%99%E3%83%B3%E3%83%88%231.db",
	} {
		if got := sqliteURI(in); got != want {
			t.Errorf("sqliteURI(%q) = %q, want %q", in, got, want)
		}
	}
}
