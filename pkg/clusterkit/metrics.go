package clusterkit

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// metrics are the node's Prometheus metrics; a nil registerer leaves them unregistered (they
// are still updated, at no cost worth measuring).
//
// The leader's gauges (handoffs, under-replicated partitions) describe the last map this node
// published as leader and are zeroed when its term ends, so that only the leader reports them;
// they, leading and observePublish are used by the election's one goroutine only.
type metrics struct {
	epoch            prometheus.Gauge
	isLeader         prometheus.Gauge
	leaderTerms      prometheus.Counter
	mapsPublished    *prometheus.CounterVec
	underReplicated  prometheus.Gauge
	handoffsPending  prometheus.Gauge
	handoffsRunning  *prometheus.GaugeVec
	handoffsQueued   *prometheus.GaugeVec
	handoffsOverdue  prometheus.Gauge
	handoffRetries   prometheus.Counter
	handoffSeconds   prometheus.Histogram
	rebalanceSeconds prometheus.Histogram
	hookSeconds      *prometheus.HistogramVec
	fenced           prometheus.Gauge
	leaseMargin      prometheus.Histogram
	mapWriteBytes    *prometheus.CounterVec
	invalidRecords   *prometheus.CounterVec
	mapRecoveries    prometheus.Counter
	etcd             etcdSizeMetrics

	// running holds the node labels of handoffsRunning, to drop the nodes that left.
	running map[string]bool
}

// Label values known in advance are created at zero, so that a series exists (and rate and
// increase see its first change) before anything happened.
var (
	mapReasons = []string{state.ReasonCreate, state.ReasonJoin, state.ReasonLeave, state.ReasonCrash,
		state.ReasonDrain, state.ReasonAdmin, state.ReasonHandoff, state.ReasonTimeout, state.ReasonRebalance}
	mapParts      = []string{"head", "checkpoint", "delta", "nodes"}
	recordKinds   = []string{"node", "handoffs", "held", "map"}
	hookKinds     = []string{hookKindPartitionChange, hookKindEvent}
	handoffBounds = prometheus.ExponentialBuckets(0.01, 3, 12) // 10ms to about 30 minutes
	hookBounds    = prometheus.ExponentialBuckets(0.0001, 4, 12)
	// marginBounds are written out: alert rules select a bucket by its le label, which must
	// read "0.3", not the sum of three 0.1s.
	marginBounds = []float64{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}
)

// Hook kinds, the hook label of clusterkit_hook_duration_seconds.
const (
	hookKindPartitionChange = "partition_change" // OnPartitionChange
	hookKindEvent           = "event"            // OnEvent
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_map_epoch",
			Help: "Epoch of the partition map this node holds."}),
		isLeader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_is_leader",
			Help: "1 while this node leads the cluster (publishes its maps), else 0."}),
		leaderTerms: prometheus.NewCounter(prometheus.CounterOpts{Name: "clusterkit_leader_terms_total",
			Help: "Leader elections this node won; summed over the nodes, the cluster's leader changes."}),
		mapsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clusterkit_maps_published_total",
			Help: "Partition maps this node published as leader, by the reason of their cause: create, join, leave, crash, drain, admin, handoff, timeout, rebalance."}, []string{"reason"}),
		underReplicated: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_partitions_under_replicated",
			Help: "Partitions with fewer serving holders than min(live nodes, ReplicationFactor) in the last map this node published as leader; 0 on other nodes."}),
		handoffsPending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_handoffs_pending",
			Help: "Partition copies waiting for an acknowledgement in the last map this node published as leader; 0 on other nodes."}),
		handoffsRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clusterkit_handoffs_running",
			Help: "Partition copies in flight into each node (label node) in the last map this node published as leader; absent on other nodes."}, []string{"node"}),
		handoffsQueued: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "clusterkit_handoffs_queued",
			Help: "Partition copies into each node (label node) that wait for a slot under MaxHandoffsPerNode or MaxHandoffs, in the last map this node published as leader; absent on other nodes."}, []string{"node"}),
		handoffsOverdue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_handoffs_overdue",
			Help: "Pending copies that have been asked again after HandoffTimeout at least once; 0 on nodes that do not lead."}),
		handoffRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "clusterkit_handoff_retries_total",
			Help: "Copies asked again because they did not finish within HandoffTimeout."}),
		handoffSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clusterkit_handoff_duration_seconds",
			Help: "Time from a copy's request (its last one, for a copy asked again) to the map this node published as leader that completes it.", Buckets: handoffBounds}),
		rebalanceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clusterkit_rebalance_duration_seconds",
			Help: "Time to compute and publish a partition map.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		hookSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "clusterkit_hook_duration_seconds",
			Help: "Time one user hook took on this node, by kind: partition_change (OnPartitionChange), event (OnEvent).", Buckets: hookBounds}, []string{"hook"}),
		fenced: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_self_fenced",
			Help: "1 while the node could not renew its lease in time and claims no primary role."}),
		leaseMargin: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clusterkit_lease_renewal_margin_ratio",
			Help:    "Share of the lease TTL left before the node's self-fencing deadline when a lease renewal succeeded: about 0.55 when every renewal (each third of the TTL) succeeds, about 0.2 after one failed, 0 or less when the node had fenced itself.",
			Buckets: marginBounds}),
		mapWriteBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clusterkit_map_write_bytes_total",
			Help: "Bytes of partition maps this node wrote to etcd as leader, by part: head, checkpoint, delta or nodes (a node table)."}, []string{"part"}),
		invalidRecords: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clusterkit_invalid_records_total",
			Help: "Records in etcd this node skipped as unreadable or invalid, once per revision, by kind: node, handoffs, held, map."}, []string{"kind"}),
		mapRecoveries: prometheus.NewCounter(prometheus.CounterOpts{Name: "clusterkit_map_recoveries_total",
			Help: "Maps this node published as leader to replace a stored map that was missing, unreadable or older than one a node held."}),
		etcd:    newEtcdSizeMetrics(),
		running: map[string]bool{},
	}
	for _, vec := range []struct {
		v      *prometheus.CounterVec
		values []string
	}{{m.mapsPublished, mapReasons}, {m.mapWriteBytes, mapParts}, {m.invalidRecords, recordKinds}} {
		for _, v := range vec.values {
			vec.v.WithLabelValues(v)
		}
	}
	for _, k := range hookKinds {
		m.hookSeconds.WithLabelValues(k)
	}
	if reg != nil {
		for _, c := range append([]prometheus.Collector{m.epoch, m.isLeader, m.leaderTerms, m.mapsPublished, m.underReplicated,
			m.handoffsPending, m.handoffsRunning, m.handoffsQueued, m.handoffsOverdue, m.handoffRetries, m.handoffSeconds, m.rebalanceSeconds,
			m.hookSeconds, m.fenced, m.leaseMargin, m.mapWriteBytes, m.invalidRecords, m.mapRecoveries}, m.etcd.collectors()...) {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// leading records the start (true) or the end (false) of a term as leader. At the end the
// leader's gauges are zeroed: another node publishes the maps now.
func (m *metrics) leading(on bool) {
	if on {
		m.leaderTerms.Inc()
		m.isLeader.Set(1)
		return
	}
	m.isLeader.Set(0)
	m.underReplicated.Set(0)
	m.handoffsPending.Set(0)
	m.handoffsOverdue.Set(0)
	m.handoffsRunning.Reset()
	m.handoffsQueued.Reset()
	clear(m.running)
}

// observePublish records a map this node published as leader: next, computed from prev (nil
// for the first map), for a cluster of replication factor rf, published took after it was
// begun.
func (m *metrics) observePublish(prev, next *state.Map, rf int, took time.Duration) {
	now := time.Now()
	m.rebalanceSeconds.Observe(took.Seconds())
	m.mapsPublished.WithLabelValues(next.Cause.Reason).Inc()
	want := min(len(next.Nodes), rf)
	pending, overdue, under := 0, 0, 0
	running := make(map[string]int, len(next.Nodes))
	for id := range next.Nodes {
		running[id] = 0
	}
	for i := range next.Partitions {
		e := &next.Partitions[i]
		if len(e.Holders) < want {
			under++
		}
		for _, p := range e.Pending {
			pending++
			running[p.Node]++
			if p.Attempt > 1 {
				overdue++
			}
			if p.Since == next.Epoch && p.Attempt > 1 {
				m.handoffRetries.Inc()
			}
		}
		if prev != nil && i < len(prev.Partitions) {
			m.observeCompleted(&prev.Partitions[i], e, now)
		}
	}
	m.underReplicated.Set(float64(under))
	m.handoffsPending.Set(float64(pending))
	m.handoffsOverdue.Set(float64(overdue))
	for id := range m.running {
		if _, ok := running[id]; !ok {
			m.handoffsRunning.DeleteLabelValues(id)
			m.handoffsQueued.DeleteLabelValues(id)
			delete(m.running, id)
		}
	}
	queued := nextmap.Queued(next)
	for id, n := range running {
		m.handoffsRunning.WithLabelValues(id).Set(float64(n))
		m.handoffsQueued.WithLabelValues(id).Set(float64(queued[id]))
		m.running[id] = true
	}
}

// observeCompleted observes the duration of each copy pending in before that serves in after:
// from its request to now. A copy dropped without serving (its node gone, its move undone) is
// not observed.
func (m *metrics) observeCompleted(before, after *state.Entry, now time.Time) {
	for _, p := range before.Pending {
		if _, still := after.PendingFor(p.Node); still || !slices.Contains(after.Holders, p.Node) {
			continue
		}
		m.handoffSeconds.Observe(max(now.Sub(p.Started), 0).Seconds())
	}
}

func (m *metrics) observeMapWrite(enc state.Encoded) {
	m.mapWriteBytes.WithLabelValues("head").Add(float64(len(enc.Head)))
	for _, c := range enc.Chunks {
		m.mapWriteBytes.WithLabelValues("checkpoint").Add(float64(len(c)))
	}
	for _, d := range enc.Deltas {
		m.mapWriteBytes.WithLabelValues("delta").Add(float64(len(d)))
	}
	if enc.Nodes != nil {
		m.mapWriteBytes.WithLabelValues("nodes").Add(float64(len(enc.Nodes)))
	}
}
