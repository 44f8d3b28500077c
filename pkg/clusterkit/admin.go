package clusterkit

import (
	"maps"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// applyAdmin follows the operators' actions under admin/ (written by the clusterkit CLI or with
// etcdctl): it keeps the valid ones in v.admin, by key, and skips the others as invalid
// records (logged once per revision, counted as kind "admin"). It reports whether the
// constraints changed.
func (l *leader) applyAdmin(v *view, u update) bool {
	before := v.constraints()
	apply := func(kv *mvccpb.KeyValue, deleted bool) {
		key := string(kv.Key)
		delete(v.admin, key)
		delete(v.adminRev, key)
		if deleted {
			return
		}
		a, err := state.DecodeAdmin(kv.Value, l.env.config.PartitionCount)
		if err != nil {
			l.skip(v, "admin", kv, err)
			return
		}
		v.admin[key] = a
		v.adminRev[key] = kv.ModRevision
	}
	if u.reset {
		clear(v.admin)
		clear(v.adminRev)
		for _, kv := range u.kvs {
			apply(kv, false)
		}
	}
	for _, ev := range u.events {
		apply(ev.Kv, ev.Type == clientv3.EventTypeDelete)
	}
	after := v.constraints()
	return !constraintsEqual(before, after)
}

// constraints are the placement constraints of the actions in v, in key order.
func (v *view) constraints() nextmap.Constraints {
	actions := make([]state.AdminAction, 0, len(v.admin))
	for _, k := range slices.Sorted(maps.Keys(v.admin)) {
		actions = append(actions, v.admin[k])
	}
	return nextmap.ConstraintsOf(actions)
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
