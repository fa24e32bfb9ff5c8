package app

import (
	"strings"
	"testing"
	"time"

	"github.com/mamori/mamori/shared/evidence"
)

// The 証跡 page's start-up row says what start-up checked: from a signed
// mark of an earlier full check it is not every event, and saying so
// would overstate the evidence (an auditor found "every stored event"
// over a start that read the last 300 of 392,000).
func TestStartupCheckSaysWhatWasChecked(t *testing.T) {
	now := time.Now()
	if c := startupCheck(now, nil, 0); !strings.Contains(c.Detail, "every stored event") {
		t.Errorf("full check: %q", c.Detail)
	}
	c := startupCheck(now, nil, 392060)
	if strings.Contains(c.Detail, "every") || !strings.Contains(c.Detail, "392060") ||
		!strings.Contains(c.FindingJA(), "ログ番号 392060 以降") || strings.Contains(c.FindingJA(), "すべてのイベントを検証") {
		t.Errorf("from a mark: %q / %q", c.Detail, c.FindingJA())
	}
	if c := startupCheck(now, &evidence.Checkpoint{Size: 50}, 40); !strings.Contains(c.Detail, "accepted the loss") {
		t.Errorf("accepted loss: %q", c.Detail)
	}
}
