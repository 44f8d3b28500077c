// Package keys is the one place that knows ClusterKit's etcd key schema.
//
// Everything of a cluster lives under /clusterkit/<cluster-name>/:
//
//	config                      fixed settings, written once
//	nodes/<node-id>             a node's record, attached to its lease
//	leader/<lease-id>           election candidates (go.etcd.io/etcd/client/v3/concurrency)
//	partitions                  the current partition map: inline when small, else its head
//	                            (epoch, node table, and where its partitions are)
//	partitions/<epoch>/<chunk>  the checkpoint: every partition as of that epoch, in chunks
//	                            (epoch and chunk zero-padded)
//	partitions/<epoch>/delta-<piece>
//	                            the partitions that changed at that epoch (one or more pieces)
//	handoffs/<node-id>          the copies a node has acknowledged, attached to its lease
//	held/<node-id>              the epoch of the map a node holds, written only when the stored
//	                            map is older, missing or unreadable; attached to its lease
//	etcd-members/<node-id>      the embedded etcd member a node runs (member ID and URLs), kept
//	                            until the node is decommissioned
//	etcd-members-lock/<lease>   the lock a node holds while it decides whether to become an
//	                            embedded etcd member and, if so, joins (go.etcd.io/etcd/client/v3/concurrency)
package keys

import (
	"fmt"
	"strconv"
	"strings"
)

// Root is the prefix shared by every ClusterKit cluster in one etcd.
const Root = "/clusterkit/"

// Schema builds the keys of one cluster. The zero value is not usable; use New.
type Schema struct {
	prefix string
}

// New returns the schema of the named cluster. The name must be valid (see ValidClusterName).
func New(clusterName string) Schema {
	return Schema{prefix: Root + clusterName + "/"}
}

// MaxNameLen bounds node IDs and cluster names.
const MaxNameLen = 128

// ValidClusterName reports why name cannot be used as a cluster name, or nil. Cluster names and
// node IDs share one character set (see validName).
func ValidClusterName(name string) error { return validName("cluster name", name) }

// ValidNodeID reports why id cannot be used as a node ID, or nil.
func ValidNodeID(id string) error { return validName("node ID", id) }

// validName checks the one character set of node IDs and cluster names: 1 to MaxNameLen ASCII
// letters, digits, '-', '_' and '.', starting with a letter or a digit. They are etcd key
// segments, embedded etcd member names (where '=' and ',' have a meaning) and the last element
// of default data directories (where "." and ".." would escape), so nothing else is allowed.
func validName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%s %q is longer than %d bytes", what, name, MaxNameLen)
	}
	for i, r := range name {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("%s %q must start with a letter or a digit", what, name)
		}
		if !alnum && r != '-' && r != '_' && r != '.' {
			return fmt.Errorf("%s %q has %q: use letters, digits, '-', '_' and '.'", what, name, r)
		}
	}
	return nil
}

// Prefix is the cluster's root, /clusterkit/<cluster-name>/.
func (s Schema) Prefix() string { return s.prefix }

// Config is the key of the cluster's fixed settings.
func (s Schema) Config() string { return s.prefix + "config" }

// NodesPrefix is the prefix of all node records.
func (s Schema) NodesPrefix() string { return s.prefix + "nodes/" }

// Node is the key of one node's record.
func (s Schema) Node(id string) string { return s.prefix + "nodes/" + id }

// NodeID returns the node ID of a node record key, and false if key is not one.
func (s Schema) NodeID(key string) (string, bool) { return idUnder(s.NodesPrefix(), key) }

// idUnder returns the node ID of key, a per-node key right under prefix, and false if key is not one.
func idUnder(prefix, key string) (string, bool) {
	id, ok := strings.CutPrefix(key, prefix)
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", false
	}
	return id, true
}

// LeaderPrefix is the election prefix as concurrency.NewElection takes it: the election adds
// the "/" itself, so candidates' keys are leader/<lease-id>.
func (s Schema) LeaderPrefix() string { return s.prefix + "leader" }

// Partitions is the key of the current partition map.
func (s Schema) Partitions() string { return s.prefix + "partitions" }

// ChunksPrefix is the prefix of the chunks of the map published at epoch. Epochs are
// zero-padded to 20 digits so that byte order is numeric order: the range
// [AllChunksPrefix, ChunksPrefix(e)) holds exactly the chunks of the epochs before e.
func (s Schema) ChunksPrefix(epoch uint64) string {
	return fmt.Sprintf("%spartitions/%020d/", s.prefix, epoch)
}

// ChunksEnd ends the range [ChunksPrefix(epoch), ChunksEnd(epoch)) of every key under
// ChunksPrefix(epoch), as etcd's WithPrefix ends it: the epoch's chunks, delta pieces and node
// table.
func (s Schema) ChunksEnd(epoch uint64) string {
	p := s.ChunksPrefix(epoch)
	return p[:len(p)-1] + "0" // the byte after '/'
}

// AllChunksPrefix is the prefix of the chunks of every epoch.
func (s Schema) AllChunksPrefix() string { return s.prefix + "partitions/" }

// Chunk is the key of chunk i of the map published at epoch. Chunk numbers are zero-padded
// so that a prefix read returns them in order.
func (s Schema) Chunk(epoch uint64, i int) string {
	return fmt.Sprintf("%s%06d", s.ChunksPrefix(epoch), i)
}

// Delta is the key of piece i of the change published at epoch. "delta-" sorts after the
// digits of chunk numbers, so a range over an epoch's chunks never includes its deltas.
func (s Schema) Delta(epoch uint64, i int) string {
	return fmt.Sprintf("%sdelta-%06d", s.ChunksPrefix(epoch), i)
}

// NodeTable is the key of the node table written at epoch, which the heads of the epochs after
// it name as their nodes_base. "nodes" sorts after an epoch's chunks and delta pieces.
func (s Schema) NodeTable(epoch uint64) string { return s.ChunksPrefix(epoch) + "nodes" }

// MapKey is what the name of a key under AllChunksPrefix says.
type MapKey struct {
	Epoch uint64
	// Delta is true for a delta piece, false for a checkpoint chunk.
	Delta bool
	// Nodes is true for a node table (Index is then 0).
	Nodes bool
	// Index is the chunk or piece number.
	Index int
}

// ParseMapKey parses a chunk, delta or node table key, and reports false for anything else.
func (s Schema) ParseMapKey(key string) (MapKey, bool) {
	rest, ok := strings.CutPrefix(key, s.AllChunksPrefix())
	if !ok {
		return MapKey{}, false
	}
	es, name, ok := strings.Cut(rest, "/")
	if !ok || len(es) != 20 {
		return MapKey{}, false
	}
	epoch, err := strconv.ParseUint(es, 10, 64)
	if err != nil {
		return MapKey{}, false
	}
	k := MapKey{Epoch: epoch}
	if name == "nodes" {
		k.Nodes = true
		return k, true
	}
	name, k.Delta = strings.CutPrefix(name, "delta-")
	if len(name) != 6 {
		return MapKey{}, false
	}
	i, err := strconv.Atoi(name)
	if err != nil || i < 0 {
		return MapKey{}, false
	}
	k.Index = i
	return k, true
}

// HandoffsPrefix is the prefix of all handoff acknowledgement records.
func (s Schema) HandoffsPrefix() string { return s.prefix + "handoffs/" }

// Handoff is the key of node id's acknowledgement record.
func (s Schema) Handoff(id string) string { return s.prefix + "handoffs/" + id }

// HandoffNode returns the node of an acknowledgement record key.
func (s Schema) HandoffNode(key string) (string, bool) { return idUnder(s.HandoffsPrefix(), key) }

// HeldPrefix is the prefix of the held-epoch reports.
func (s Schema) HeldPrefix() string { return s.prefix + "held/" }

// Held is the key of node id's held-epoch report.
func (s Schema) Held(id string) string { return s.prefix + "held/" + id }

// HeldNode returns the node of a held-epoch report key.
func (s Schema) HeldNode(key string) (string, bool) { return idUnder(s.HeldPrefix(), key) }

// EtcdMembersPrefix is the prefix of the records of the nodes that run an embedded etcd member.
func (s Schema) EtcdMembersPrefix() string { return s.prefix + "etcd-members/" }

// EtcdMember is the key of the record of the embedded etcd member node id runs.
func (s Schema) EtcdMember(id string) string { return s.prefix + "etcd-members/" + id }

// EtcdMembersLock is the prefix of the mutex that serialises embedded member joins, as
// concurrency.NewMutex takes it.
func (s Schema) EtcdMembersLock() string { return s.prefix + "etcd-members-lock" }

// EtcdMembersJoinLock is the prefix of the mutex that serialises the joins themselves (learner,
// catch-up, promotion) of nodes that reserved a member place: etcd admits one learner at a time.
func (s Schema) EtcdMembersJoinLock() string { return s.prefix + "etcd-members-join-lock" }

// AdminPrefix is the prefix of operators' actions: admin/<kind>/<name>.
func (s Schema) AdminPrefix() string { return s.prefix + "admin/" }

// Admin is the key of an operator's action of kind (cordon, drain, maintenance, move, weight)
// named name: the node, the partition's index, or the maintenance's ID.
func (s Schema) Admin(kind, name string) string { return s.prefix + "admin/" + kind + "/" + name }

// HistoryPrefix is the prefix of the records of published maps.
func (s Schema) HistoryPrefix() string { return s.prefix + "history/" }

// History is the key of the record of the map of epoch, zero-padded so that byte order is
// numeric order.
func (s Schema) History(epoch uint64) string {
	return fmt.Sprintf("%shistory/%020d", s.prefix, epoch)
}

// CA holds the cluster's CA in secure mode: its certificate and its key sealed under the join
// token.
func (s Schema) CA() string { return s.prefix + "pki/ca" }
