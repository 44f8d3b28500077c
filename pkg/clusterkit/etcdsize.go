package clusterkit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/pkg/embed"
)

// The etcd size monitor watches the database size of the etcd members the node talks to. When
// a member's database file reaches its quota, etcd raises its NOSPACE alarm and refuses puts and
// new leases: no map can be published and no node can register until an operator frees space.
// The monitor exports the size as metrics and warns well before that, once per crossing.
//
// It does not defragment. A defragmentation rewrites the whole database and blocks the member's
// reads and writes meanwhile, for longer the larger the database: lease keepalives through that
// member stall, and nodes could lose their leases. Which member to defragment when, and whether
// the cluster can spare it now, is the operator's call.

const (
	// defaultEtcdSizeEvery is how often the monitor asks each member for its status (a new
	// connection and one small request). Filling the fifth of a 2 GiB quota that the warning
	// leaves within one period would take over 13 MB of writes per second, far more than a few
	// maps per second write.
	defaultEtcdSizeEvery = 30 * time.Second
	// etcdSizeWarnShare is the share of its quota at which a member's database is warned about.
	etcdSizeWarnShare = 0.8
	// etcdSizeMaxBackoff bounds the wait after failed polls, in poll periods.
	etcdSizeMaxBackoff = 8
	// etcdSizeMinPoke is the least time between a poll and one prompted by a refused write.
	etcdSizeMinPoke = time.Second
)

// etcdSizeMetrics are the monitor's gauges, all about one member: the one nearest to its quota
// among those the node polls.
type etcdSizeMetrics struct {
	size    prometheus.Gauge
	inUse   prometheus.Gauge
	quota   prometheus.Gauge
	noSpace prometheus.Gauge
}

func newEtcdSizeMetrics() etcdSizeMetrics {
	return etcdSizeMetrics{
		size: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_etcd_db_size_bytes",
			Help: "Size of etcd's database file, of the member nearest to its quota among those this node polls (its own embedded member, else its etcd client's endpoints). etcd refuses writes once it reaches clusterkit_etcd_db_quota_bytes."}),
		inUse: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_etcd_db_size_in_use_bytes",
			Help: "Bytes of that member's database in use; a defragmentation returns the rest."}),
		quota: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_etcd_db_quota_bytes",
			Help: "That member's space quota (etcd's --quota-backend-bytes)."}),
		noSpace: prometheus.NewGauge(prometheus.GaugeOpts{Name: "clusterkit_etcd_nospace_alarm",
			Help: "1 while a member this node polls reports etcd's NOSPACE alarm: etcd refuses every write (no map, no registration) until an operator frees space and disarms it."}),
	}
}

func (m etcdSizeMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.size, m.inUse, m.quota, m.noSpace}
}

// memberSize is one member's answer to a status request.
type memberSize struct {
	endpoint string
	// size is the database file's size, inUse the part of it in use.
	size, inUse int64
	// quota is the member's quota; 0 from an etcd before 3.6, which does not report it.
	quota int64
	// noSpace is set when the member reports etcd's NOSPACE alarm.
	noSpace bool
}

// share is the part of its quota the member's database takes; a quota etcd did not report is
// etcd's default.
func (m memberSize) share() float64 {
	return float64(m.size) / float64(m.quotaOrDefault())
}

func (m memberSize) quotaOrDefault() int64 { return cmp.Or(m.quota, embed.DefaultQuotaBackendBytes) }

// sizeState is what the monitor remembers of its last poll; it logs only when it changes.
type sizeState struct {
	// high: a member's database takes etcdSizeWarnShare of its quota or more.
	high bool
	// noSpace: a member reports the NOSPACE alarm.
	noSpace bool
}

// assessSize returns the member of sizes nearest to its quota, and the state the poll found.
// sizes is not empty.
func assessSize(sizes []memberSize) (worst memberSize, st sizeState) {
	worst = sizes[0]
	for _, m := range sizes {
		if m.share() > worst.share() {
			worst = m
		}
		st.noSpace = st.noSpace || m.noSpace
	}
	st.high = worst.share() >= etcdSizeWarnShare
	return worst, st
}

// etcdSize is the monitor. run owns its one goroutine.
type etcdSize struct {
	env     *env
	log     *zap.Logger
	members *members
	metrics etcdSizeMetrics
	every   time.Duration
	// refused receives a value when etcd refused a write for want of space, so that the alarm
	// is logged and exported at once rather than at the next period.
	refused chan struct{}
}

func newEtcdSize(e *env, log *zap.Logger, ms *members, m etcdSizeMetrics) *etcdSize {
	return &etcdSize{env: e, log: log, members: ms, metrics: m, every: cmp.Or(e.opts.etcdSizeEvery, defaultEtcdSizeEvery),
		refused: make(chan struct{}, 1)}
}

// noSpace tells the monitor that etcd refused a write with "database space exceeded": it polls
// now, unless it polled less than etcdSizeMinPoke ago. It never blocks.
func (w *etcdSize) noSpace() {
	select {
	case w.refused <- struct{}{}:
	default:
	}
}

// isNoSpace reports whether err is etcd's refusal of a write for want of space.
func isNoSpace(err error) bool {
	return err != nil && (errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace) ||
		strings.Contains(err.Error(), rpctypes.ErrNoSpace.Error()))
}

// endpoints are the members to poll: a node that runs a member polls it (every member node
// polls its own), any other node every endpoint of its etcd client.
func (w *etcdSize) endpoints() []string {
	if m := w.members.current(); m != nil {
		return m.Endpoints()
	}
	return w.env.client.Endpoints()
}

// run polls at once and then every period, until ctx ends. After a poll that reached no member
// it waits twice as long as before, up to etcdSizeMaxBackoff periods.
func (w *etcdSize) run(ctx context.Context) {
	var last sizeState
	failing := false
	wait := time.Duration(0)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	var polled time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.refused:
			if time.Since(polled) < etcdSizeMinPoke {
				continue
			}
		}
		polled = time.Now()
		sizes, err := w.poll(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !failing {
				w.log.Warn("reading etcd's database size failed", zap.Error(err))
			}
			failing = true
			wait = min(max(2*wait, w.every), etcdSizeMaxBackoff*w.every)
			timer.Reset(wait)
			continue
		}
		failing = false
		wait = w.every
		timer.Reset(wait)
		worst, st := assessSize(sizes)
		w.metrics.size.Set(float64(worst.size))
		w.metrics.inUse.Set(float64(worst.inUse))
		w.metrics.quota.Set(float64(worst.quotaOrDefault()))
		w.metrics.noSpace.Set(b2f(st.noSpace))
		w.report(last, st, worst)
		last = st
	}
}

// report logs what changed since the last poll.
func (w *etcdSize) report(last, now sizeState, worst memberSize) {
	fields := []zap.Field{zap.String("endpoint", worst.endpoint), zap.Int64("db_size_bytes", worst.size),
		zap.Int64("db_size_in_use_bytes", worst.inUse), zap.Int64("quota_bytes", worst.quotaOrDefault())}
	switch {
	case now.high && !last.high:
		w.log.Warn("etcd database nearing its quota: at the quota etcd refuses writes (no new map, no new node); compact and defragment, one member at a time",
			append(fields, zap.Int("percent_of_quota", int(100*worst.share())))...)
	case !now.high && last.high:
		w.log.Info("etcd database back under the warning threshold", fields...)
	}
	switch {
	case now.noSpace && !last.noSpace:
		w.log.Error("etcd raised its NOSPACE alarm and refuses writes: compact, defragment, then disarm the alarm", fields...)
	case !now.noSpace && last.noSpace:
		w.log.Info("etcd's NOSPACE alarm is disarmed", fields...)
	}
}

// poll asks each endpoint for its status, for at most EtcdDialTimeout each. It fails only when
// no endpoint answers: a member that does not answer holds no data that grows.
func (w *etcdSize) poll(ctx context.Context) ([]memberSize, error) {
	eps := w.endpoints()
	if len(eps) == 0 {
		return nil, errors.New("no etcd endpoint to ask")
	}
	var sizes []memberSize
	var errs []error
	for _, ep := range eps {
		sctx, cancel := context.WithTimeout(ctx, w.env.opts.EtcdDialTimeout)
		resp, err := w.env.client.Status(sctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ep, err))
			continue
		}
		m := memberSize{endpoint: ep, size: resp.DbSize, inUse: resp.DbSizeInUse, quota: resp.DbSizeQuota}
		for _, e := range resp.Errors {
			m.noSpace = m.noSpace || strings.Contains(e, pb.AlarmType_NOSPACE.String())
		}
		sizes = append(sizes, m)
	}
	if len(sizes) == 0 {
		return nil, fmt.Errorf("no etcd member answers a status request: %w", errors.Join(errs...))
	}
	return sizes, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
