// Package fuzztest fuzzes every fuzz target of the module for a few seconds when asked
// (CLUSTERKIT_FUZZTIME=2s go test ./internal/fuzztest), so that a decoder change that breaks a
// target's invariants fails, and checks in every run that its table lists every target, so that
// a new one cannot be forgotten.
//
// The targets live beside the decoders they exercise (internal/state, internal/topology,
// internal/joininfo): go test runs their seeds as ordinary tests; this package runs
//
//	go test -run '^$' -fuzz '^FuzzName$' -fuzztime 2s -parallel 2 ./pkg
//
// for each when CLUSTERKIT_FUZZTIME is set (and -short is not). To fuzz one target longer:
//
//	go test ./internal/state -run '^$' -fuzz '^FuzzDecodeHead$' -fuzztime 5m
//
// An input that fails is written under the target package's testdata/fuzz directory, where go
// test finds it as a seed from then on.
package fuzztest
