// Package fuzztest fuzzes every fuzz target of the module for a few seconds as part of the
// ordinary tests, so that a decoder change that breaks a target's invariants fails go test, and
// checks that its table lists every target, so that a new one cannot be forgotten.
//
// The targets live beside the decoders they exercise (internal/state, pkg/client,
// pkg/clusterkit): go test runs their seeds as ordinary tests; this package runs
//
//	go test -run '^$' -fuzz '^FuzzName$' -fuzztime 2s -parallel 2 ./pkg
//
// for each, unless -short is set. To fuzz one target longer:
//
//	go test ./internal/state -run '^$' -fuzz '^FuzzDecodeHead$' -fuzztime 5m
//
// An input that fails is written under the target package's testdata/fuzz directory, where go
// test finds it as a seed from then on.
package fuzztest
