// Package rebalance computes partition placements: which live nodes hold each partition, and which
// of them is primary. It is a pure, deterministic function with no I/O, goroutines, clock or logger.
package rebalance
