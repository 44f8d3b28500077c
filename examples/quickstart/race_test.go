//go:build race

package quickstart_test

// raceEnabled makes the tests build the programs with the race detector too.
const raceEnabled = true
