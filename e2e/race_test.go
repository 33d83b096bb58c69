//go:build race

package e2e

// raceEnabled builds the binaries under test with the race detector too when
// the suite itself runs with -race.
const raceEnabled = true
