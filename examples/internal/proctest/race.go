//go:build race

package proctest

// raceEnabled makes Build build the programs with the race detector too.
const raceEnabled = true
