//go:build race

package e2e

// raceEnabled makes the tests build the programs they run with the race detector too.
const raceEnabled = true
