package nextmap

import (
	"slices"

	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// Summary is what next changes over prev (nil for the first map): the record a published map
// leaves in the history.
func Summary(prev, next *state.Map) wire.HistoryRecord {
	r := wire.HistoryRecord{Epoch: next.Epoch, UpdatedAt: next.UpdatedAt, Leader: next.Leader, Cause: next.Cause, Nodes: len(next.Nodes)}
	for i := range next.Partitions {
		e := &next.Partitions[i]
		r.Pending += len(e.Pending)
		for _, p := range e.Pending {
			if p.Since == next.Epoch {
				r.CopiesStarted++
			}
		}
		if prev == nil || len(prev.Partitions) != len(next.Partitions) {
			r.Changed++
			continue
		}
		o := &prev.Partitions[i]
		if o.Equal(e) {
			continue
		}
		r.Changed++
		if len(o.Holders) > 0 && len(e.Holders) > 0 && o.Holders[0] != e.Holders[0] {
			r.PrimariesMoved++
		}
		for _, p := range o.Pending {
			if slices.Contains(e.Holders, p.Node) {
				r.CopiesDone++
			}
		}
	}
	return r
}
