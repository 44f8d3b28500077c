//go:build race

package proctest

// RaceEnabled is whether the test binary runs with the race detector; Build then builds the
// programs with it too.
const RaceEnabled = true
