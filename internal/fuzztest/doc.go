// Package fuzztest fuzzes every fuzz target of the module for a second in every go test run, so
// that a decoder change that breaks a target's invariants fails, and checks that its table
// lists every target, so that a new one cannot be forgotten.
//
// The targets live beside the decoders they exercise (internal/state, internal/topology,
// internal/joininfo): go test runs their seeds as ordinary tests; this package runs
//
//	go test -run '^$' -fuzz '^FuzzName$' -fuzztime 1s -parallel 1 ./pkg
//
// for each, one after the other. CLUSTERKIT_FUZZTIME sets another time per target
// (CLUSTERKIT_FUZZTIME=30s), or turns fuzzing off (CLUSTERKIT_FUZZTIME=0); -short skips it. To
// fuzz one target longer:
//
//	go test ./internal/state -run '^$' -fuzz '^FuzzDecodeHead$' -fuzztime 5m
//
// Fuzzing builds the package's tests instrumented, every package they link included, so the
// fuzzed packages link nothing heavy: not the etcd client, grpc or zap (TestTargetsLinkNoEtcd).
// The decoders of pkg/client and pkg/clusterkit, which link the etcd client, live in
// internal/topology and internal/joininfo for that reason, and internal/state leaves the etcd
// requests to internal/mapstore.
//
// An input that fails is written under the target package's testdata/fuzz directory, where go
// test finds it as a seed from then on.
package fuzztest
