package clustertest

import (
	"slices"
	"sync"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// Call is one OnPartitionChange call a node received.
type Call struct {
	// Node is the node whose hook was called.
	Node      string
	Partition string
	CopyFrom  []string
	CopyTo    string
}

// NodeEvent is one OnEvent event a node received.
type NodeEvent struct {
	Node string
	clusterkit.Event
}

// Recorder records the hook calls and events of the nodes it is attached to. Safe for
// concurrent use.
type Recorder struct {
	mu     sync.Mutex
	calls  []Call
	events []NodeEvent
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{} }

// Attach registers the recorder's hooks on ck; pass it to Cluster.Start or Add so that it sees
// the changes the start brings about.
func (r *Recorder) Attach(ck *clusterkit.ClusterKit) {
	self := ck.GetMyNodeID()
	ck.OnPartitionChange(func(partitionID string, from []*clusterkit.Node, to *clusterkit.Node) {
		c := Call{Node: self, Partition: partitionID, CopyTo: to.ID}
		for _, n := range from {
			c.CopyFrom = append(c.CopyFrom, n.ID)
		}
		r.mu.Lock()
		r.calls = append(r.calls, c)
		r.mu.Unlock()
	})
	ck.OnEvent(func(ev clusterkit.Event) {
		r.mu.Lock()
		r.events = append(r.events, NodeEvent{Node: self, Event: ev})
		r.mu.Unlock()
	})
}

// Calls returns the hook calls recorded so far, in the order they ran.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Events returns the events recorded so far, in the order they ran.
func (r *Recorder) Events() []NodeEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Reset forgets what was recorded.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls, r.events = nil, nil
}
