//go:build !race

package quickstart_test

const raceEnabled = false
