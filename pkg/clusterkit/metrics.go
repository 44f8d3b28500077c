package clusterkit

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

// metrics are the node's Prometheus metrics; a nil registerer leaves them unregistered (they
// are still updated, at no cost worth measuring).
type metrics struct {
	epoch            prometheus.Gauge
	handoffsPending  prometheus.Gauge
	handoffsOverdue  prometheus.Gauge
	handoffRetries   prometheus.Counter
	rebalanceSeconds prometheus.Histogram
	fenced           prometheus.Gauge
	mapWriteBytes    *prometheus.CounterVec
	invalidRecords   *prometheus.CounterVec
	mapRecoveries    prometheus.Counter
	etcd             etcdSizeMetrics
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_map_epoch",
			Help: "Epoch of the partition map this node holds."}),
		handoffsPending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_handoffs_pending",
			Help: "Partition copies waiting for an acknowledgement in the last map this node published as leader."}),
		handoffsOverdue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_handoffs_overdue",
			Help: "Pending copies that have been asked again after HandoffTimeout at least once."}),
		handoffRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "clusterkit_handoff_retries_total",
			Help: "Copies asked again because they did not finish within HandoffTimeout."}),
		rebalanceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "clusterkit_rebalance_duration_seconds",
			Help: "Time to compute and publish a partition map.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		fenced: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_self_fenced",
			Help: "1 while the node could not renew its lease in time and claims no primary role."}),
		mapWriteBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clusterkit_map_write_bytes_total",
			Help: "Bytes of partition maps this node wrote to etcd as leader, by part: head, checkpoint, delta or nodes (a node table)."}, []string{"part"}),
		invalidRecords: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "clusterkit_invalid_records_total",
			Help: "Records in etcd this node skipped as unreadable or invalid, once per revision, by kind: node, handoffs, held, map."}, []string{"kind"}),
		mapRecoveries: prometheus.NewCounter(prometheus.CounterOpts{Name: "clusterkit_map_recoveries_total",
			Help: "Maps this node published as leader to replace a stored map that was missing, unreadable or older than one a node held."}),
		etcd: newEtcdSizeMetrics(),
	}
	if reg != nil {
		for _, c := range append([]prometheus.Collector{m.epoch, m.handoffsPending, m.handoffsOverdue, m.handoffRetries, m.rebalanceSeconds, m.fenced, m.mapWriteBytes, m.invalidRecords, m.mapRecoveries}, m.etcd.collectors()...) {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) observePublish(next *state.Map, took time.Duration) {
	m.rebalanceSeconds.Observe(took.Seconds())
	pending, overdue := 0, 0
	for i := range next.Partitions {
		for _, p := range next.Partitions[i].Pending {
			pending++
			if p.Attempt > 1 {
				overdue++
			}
			if p.Since == next.Epoch && p.Attempt > 1 {
				m.handoffRetries.Inc()
			}
		}
	}
	m.handoffsPending.Set(float64(pending))
	m.handoffsOverdue.Set(float64(overdue))
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
