package clusterkit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/follow"
	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// The operators' actions under admin/ (written by the clusterkit CLI or with etcdctl) are read
// in two places, with the same code: the leader applies them to placement in each term, and
// every node follows them for what it shows (each node's weight and state in GET /cluster and
// the dashboard).

// applyAdminRecords applies one read or watch response of the admin/ prefix to admin, the valid
// actions by key, and to revs, when not nil, the ModRevision of each: a record that
// state.DecodeAdmin refuses is left out, as if it were not there, and handed to skip.
func applyAdminRecords(admin map[string]state.AdminAction, revs map[string]int64, u update, partitionCount int, skip func(kv *mvccpb.KeyValue, err error)) {
	apply := func(kv *mvccpb.KeyValue, deleted bool) {
		key := string(kv.Key)
		delete(admin, key)
		delete(revs, key)
		if deleted {
			return
		}
		a, err := state.DecodeAdmin(kv.Value, partitionCount)
		if err != nil {
			skip(kv, err)
			return
		}
		admin[key] = a
		if revs != nil {
			revs[key] = kv.ModRevision
		}
	}
	if u.reset {
		clear(admin)
		clear(revs)
		for _, kv := range u.kvs {
			apply(kv, false)
		}
	}
	for _, ev := range u.events {
		apply(ev.Kv, ev.Type == clientv3.EventTypeDelete)
	}
}

// adminActions lists the actions of admin in key order.
func adminActions(admin map[string]state.AdminAction) []state.AdminAction {
	actions := make([]state.AdminAction, 0, len(admin))
	for _, k := range slices.Sorted(maps.Keys(admin)) {
		actions = append(actions, admin[k])
	}
	return actions
}

// applyAdmin follows the operators' actions for the leader: it keeps the valid ones in v.admin,
// by key, and skips the others as invalid records (logged once per revision, counted as kind
// "admin"). It reports whether the constraints changed.
func (l *leader) applyAdmin(v *view, u update) bool {
	before := v.constraints()
	applyAdminRecords(v.admin, v.adminRev, u, l.env.config.PartitionCount, func(kv *mvccpb.KeyValue, err error) { l.skip(v, "admin", kv, err) })
	return !constraintsEqual(before, v.constraints())
}

// constraints are the placement constraints of the actions in v, in key order.
func (v *view) constraints() nextmap.Constraints {
	return nextmap.ConstraintsOf(adminActions(v.admin))
}

// adminChanges lists the actions that came into force or ended since the map v holds was
// published. The first time in a term, when the leader does not know what was in force then,
// the actions written before that map count as in force, and deletions before the term are not
// seen.
func (v *view) adminChanges() []wire.AdminChange {
	if v.adminBase == nil {
		v.adminBase = make(map[string]state.AdminAction, len(v.admin))
		for k, a := range v.admin {
			if v.adminRev[k] <= v.curRev {
				v.adminBase[k] = a
			}
		}
	}
	return nextmap.AdminChanges(v.adminBase, v.admin)
}

func constraintsEqual(a, b nextmap.Constraints) bool {
	return maps.Equal(a.Drained, b.Drained) && maps.Equal(a.Cordoned, b.Cordoned) && slices.Equal(a.Maintenance, b.Maintenance) &&
		maps.Equal(a.Pins, b.Pins) && maps.Equal(a.Weights, b.Weights)
}

// adminView is what a node shows of the operators' actions: the constraints they make, which
// give each node its weight and state (nextmap.Constraints.Weight and State, as placement reads
// them), and the maintenances that stand. It is immutable once built.
type adminView struct {
	c nextmap.Constraints
	// maintenance is sorted by reason.
	maintenance []wire.Maintenance
	// tag names what the view shows: equal tags, equal documents. It is "" when the view shows
	// nothing (no drain, cordon, weight or maintenance stands), so that the ETag of a cluster
	// without operators' actions is the map's alone. Pins (moves) show only through the map and
	// do not count.
	tag string
}

// noAdmin is the view before the first read of admin/: nothing stands.
var noAdmin = &adminView{}

// newAdminView builds the view of actions, given in key order.
func newAdminView(actions []state.AdminAction) *adminView {
	v := &adminView{c: nextmap.ConstraintsOf(actions)}
	for _, a := range actions {
		if a.Kind == state.AdminMaintenance {
			v.maintenance = append(v.maintenance, wire.Maintenance{Reason: a.Reason, By: a.By, At: a.At})
		}
	}
	slices.SortStableFunc(v.maintenance, func(a, b wire.Maintenance) int { return strings.Compare(a.Reason, b.Reason) })
	if len(v.c.Drained) == 0 && len(v.c.Cordoned) == 0 && len(v.c.Weights) == 0 && len(v.maintenance) == 0 {
		return v
	}
	// JSON sorts map keys: the same actions make the same bytes, on every node.
	shown, _ := json.Marshal(struct {
		Drained     map[string]bool
		Cordoned    map[string]bool
		Weights     map[string]int
		Maintenance []wire.Maintenance
	}{v.c.Drained, v.c.Cordoned, v.c.Weights, v.maintenance})
	sum := sha256.Sum256(shown)
	v.tag = hex.EncodeToString(sum[:8])
	return v
}

// node returns the document of node n, whose record in the map is rec, with its weight and
// state as the view says.
func (v *adminView) node(n *Node, rec state.Node) wire.Node {
	return wire.Node{ID: n.ID, IP: n.IP, Zone: n.Zone, Metadata: n.Metadata,
		Weight: v.c.Weight(n.ID, rec.Weight), State: v.c.State(n.ID, rec)}
}

// adminFollower owns a node's view of the operators' actions. Run follows admin/ (follow.Keys,
// as the leader does) on the goroutine that calls it, until its context ends; the view is
// published as an immutable adminView behind an atomic pointer, and a channel is closed and
// replaced whenever what it shows changes, so that long polls wake. Invalid records are skipped
// as the leader skips them; the leader logs them, a node only at debug level.
type adminFollower struct {
	env  *env
	log  *zap.Logger
	view atomic.Pointer[adminView]
	// changed is closed and replaced every time the view's tag changes.
	changed atomic.Pointer[chan struct{}]
}

// init prepares f in place (the facade holds it by value).
func (f *adminFollower) init(e *env, log *zap.Logger) {
	f.env, f.log = e, log
	ch := make(chan struct{})
	f.changed.Store(&ch)
}

// current is the view now: noAdmin before the first read. Safe for concurrent use.
func (f *adminFollower) current() *adminView {
	if v := f.view.Load(); v != nil {
		return v
	}
	return noAdmin
}

// changes returns a channel closed when what the view shows next changes. Take it before
// reading the view, so that a change in between is not missed.
func (f *adminFollower) changes() <-chan struct{} { return *f.changed.Load() }

// run follows admin/ until ctx ends.
func (f *adminFollower) run(ctx context.Context) {
	admin := map[string]state.AdminAction{}
	// skipped holds the ModRevision of each invalid record logged, so that it is logged once.
	skipped := map[string]int64{}
	apply := func(u update) {
		applyAdminRecords(admin, nil, u, f.env.config.PartitionCount, func(kv *mvccpb.KeyValue, err error) {
			if skipped[string(kv.Key)] == kv.ModRevision {
				return
			}
			skipped[string(kv.Key)] = kv.ModRevision
			f.log.Debug("skipping invalid record", zap.String("kind", "admin"), zap.String("key", string(kv.Key)),
				zap.Int64("mod_revision", kv.ModRevision), zap.Error(err))
		})
		f.publish(newAdminView(adminActions(admin)))
	}
	p := &follow.Keys{Client: f.env.client, Log: f.log, ReadTimeout: f.env.opts.LeaseTTL,
		Key: f.env.schema.AdminPrefix(), Prefix: true,
		Reset:  func(_ context.Context, kvs []*mvccpb.KeyValue) { apply(update{reset: true, kvs: kvs}) },
		Events: func(_ context.Context, evs []*clientv3.Event) { apply(update{events: evs}) },
	}
	p.Run(ctx)
}

// publish stores v, and wakes the waiters when what it shows differs from the view before.
func (f *adminFollower) publish(v *adminView) {
	old := f.current()
	f.view.Store(v)
	if v.tag == old.tag {
		return
	}
	ch := make(chan struct{})
	close(*f.changed.Swap(&ch))
}
