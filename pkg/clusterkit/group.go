package clusterkit

import "sync"

// group starts goroutines and waits for them: every goroutine of a part is started through
// its group, and the part's Close waits on it. The zero value is ready to use.
type group struct {
	wg sync.WaitGroup
}

// Go runs f on a new goroutine that Wait waits for.
func (g *group) Go(f func()) { g.wg.Go(f) }

// Wait blocks until every goroutine started by Go has returned.
func (g *group) Wait() { g.wg.Wait() }
