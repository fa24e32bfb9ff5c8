// Package all is the one place the agent's controls are registered.
package all

import (
	"github.com/mamori/mamori/agent/internal/controls"
	"github.com/mamori/mamori/agent/internal/controls/backup"
	"github.com/mamori/mamori/agent/internal/controls/fileaccess"
	"github.com/mamori/mamori/agent/internal/controls/media"
	"github.com/mamori/mamori/agent/internal/controls/posture"
	"github.com/mamori/mamori/agent/internal/controls/screenlock"
)

// Factories lists every control the agent runs, in start order. A control
// package adds its one line here when it works: screenlock.New, media.New,
// fileaccess.New, backup.New, posture.New.
var Factories = []controls.Factory{
	screenlock.New,
	media.New,
	fileaccess.New,
	backup.New,
	posture.New,
}
