//go:build race

package report

// raceOn: the race detector slows everything several times, so the
// year-long test then runs on fewer PCs and does not time the report (CI
// runs it again without the detector).
const raceOn = true
