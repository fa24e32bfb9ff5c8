package winservice

import "testing"

func TestQuoteImagePath(t *testing.T) {
	for in, want := range map[string]string{
		`C:\Program Files\Mamori\mamori-agent.exe run`:   `"C:\Program Files\Mamori\mamori-agent.exe" run`,
		`C:\Program Files\Mamori\mamori-agent.EXE`:       `"C:\Program Files\Mamori\mamori-agent.EXE"`,
		`"C:\Program Files\Mamori\mamori-agent.exe" run`: `"C:\Program Files\Mamori\mamori-agent.exe" run`,
		// The server MSI's command line: only the program part is quoted.
		`C:\Program Files\Mamori\mamori-server.exe serve --data-dir "C:\ProgramData\Mamori\server" --listen :8443`: `"C:\Program Files\Mamori\mamori-server.exe" serve --data-dir "C:\ProgramData\Mamori\server" --listen :8443`,
		`C:\Mamori\mamori-agent.exe run --state-dir C:\x y`:                                                        `C:\Mamori\mamori-agent.exe run --state-dir C:\x y`,
		``: ``,
	} {
		if got := QuoteImagePath(in); got != want {
			t.Errorf("QuoteImagePath(%q) = %q, want %q", in, got, want)
		}
	}
}
