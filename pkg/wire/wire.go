package wire

import "time"

// Cluster is the body of GET /cluster: the partition map the answering node holds, and how keys
// map to partitions.
type Cluster struct {
	Cluster    ClusterState `json:"cluster"`
	HashConfig HashConfig   `json:"hash_config"`
}

// ClusterState is the "cluster" object of GET /cluster: one published partition map.
type ClusterState struct {
	// ID identifies the cluster; a cluster created again under the same name gets a new one.
	ID string `json:"id"`
	// Name is the cluster's name, the etcd prefix /clusterkit/<name>/ it lives under.
	Name string `json:"name"`
	// Epoch is the map's epoch: it grows by one with every published map.
	Epoch uint64 `json:"epoch"`
	// Leader is the ID of the node that published the map.
	Leader    string    `json:"leader"`
	UpdatedAt time.Time `json:"updated_at"`
	// Cause says why the map was published.
	Cause Cause `json:"cause"`
	// Nodes are the live nodes the map was computed from, by ID.
	Nodes map[string]Node `json:"nodes"`
	// PartitionMap holds every partition, by ID ("partition-<index>").
	PartitionMap map[string]Partition `json:"partition_map"`
	// Handoffs are the copies in progress: one per partition and node copying it in. The map
	// is settled when there are none. Never null.
	Handoffs []Handoff `json:"handoffs"`
	// Queued counts, by node, the copies into it that wait for a slot (MaxHandoffsPerNode or
	// MaxHandoffs); absent when none waits. The map is settled when there are no handoffs and
	// none is queued.
	Queued map[string]int `json:"queued,omitempty"`
	// Maintenance are the maintenances that stand (clusterkit maintenance on), by reason: while
	// any does, placement changes only to replace lost holders. Absent when none does.
	Maintenance []Maintenance `json:"maintenance,omitempty"`
	// Down are the nodes that crashed (their lease ended without a Stop) less than the
	// leader's CrashGracePeriod ago, by ID: the map keeps their places for them, to give back
	// if they return, but they hold nothing and are not in Nodes, which lists live nodes only.
	// Absent when there are none.
	Down map[string]DownNode `json:"down,omitempty"`
}

// DownNode is a crashed node whose places the map keeps.
type DownNode struct {
	// Since is when the leader found it gone.
	Since time.Time `json:"since"`
	Zone  string    `json:"zone,omitempty"`
}

// Maintenance is one operator's maintenance: placement holds still while it stands.
type Maintenance struct {
	Reason string    `json:"reason"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
}

// ClusterNodes is the body of GET /cluster/nodes: GET /cluster without the partition map and
// the copies, for pages that follow the map through GET /cluster/map and want each node's
// weight and state too. It is served with the ETag GET /cluster has for the same state.
type ClusterNodes struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Epoch is the epoch of the map the node table comes from.
	Epoch uint64 `json:"epoch"`
	// Nodes are the map's nodes, by ID, with their weight and state.
	Nodes       map[string]Node     `json:"nodes"`
	Maintenance []Maintenance       `json:"maintenance,omitempty"`
	Down        map[string]DownNode `json:"down,omitempty"`
}

// MapDelta is the body of GET /cluster/map?since=<epoch>: the map the answering node holds, as
// the partitions that changed since the map of epoch Since, or whole when Full is set. A reader
// holding the map of epoch Since (of the cluster ID) builds the new map by replacing the listed
// partitions of its own and keeping the others; with Full it replaces every partition.
type MapDelta struct {
	// ID identifies the cluster: a reader applies a delta only to a map of the same cluster.
	ID string `json:"id"`
	// Name is the cluster's name.
	Name string `json:"name"`
	// Epoch is the epoch of the map the answer describes.
	Epoch uint64 `json:"epoch"`
	// Since is the epoch the answer is relative to: the since parameter, or 0 when Full.
	Since uint64 `json:"since"`
	// Full is true when Partitions holds every partition: since was 0, or a map the node no
	// longer keeps (or never had).
	Full      bool      `json:"full"`
	Leader    string    `json:"leader"`
	UpdatedAt time.Time `json:"updated_at"`
	// Nodes are the live nodes of the map, all of them, by ID.
	Nodes map[string]Node `json:"nodes"`
	// PartitionCount is the number of partitions of the map, listed or not.
	PartitionCount int `json:"partition_count"`
	// HashConfig says how keys map to partitions, as in GET /cluster.
	HashConfig HashConfig `json:"hash_config"`
	// Partitions are the partitions whose primary, replicas, pending nodes or primary epoch
	// differ from the map of epoch Since (every partition when Full), in index order, in the
	// shape of GET /cluster's partition_map. Never null.
	Partitions []Partition `json:"partitions"`
}

// Node is a member of the cluster, with the JSON of clusterkit.Node.
type Node struct {
	// ID is the node's unique name.
	ID string `json:"id"`
	// IP is the host:port of the node's ClusterKit HTTP API.
	IP string `json:"ip"`
	// Zone is the node's failure domain, if it has one.
	Zone string `json:"zone,omitempty"`
	// Metadata is what the application published for the node, for example the address of
	// its own data service.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Weight is the node's weight in placement: an operator's (clusterkit weight) when one
	// stands, else the node's own (Options.Weight, 1 by default). State is "draining" (its
	// partitions move to the others: its own drain or an operator's), "cordoned" (it is given
	// nothing another node can keep), or absent for a node used as any other. Both follow the
	// operators' records as the answering node last read them; GET /cluster and
	// /cluster/nodes set them, GET /cluster/map (whose answers follow the map alone) does not.
	Weight int    `json:"weight,omitempty"`
	State  string `json:"state,omitempty"`
}

// Partition is one partition and its holders, with the JSON of clusterkit.Partition.
type Partition struct {
	// ID is "partition-<index>".
	ID string `json:"id"`
	// PrimaryNode is the ID of the node that holds the primary copy.
	PrimaryNode string `json:"primary_node"`
	// ReplicaNodes are the IDs of the other holders, in order. Never null.
	ReplicaNodes []string `json:"replica_nodes"`
	// PrimaryEpoch is the map epoch at which PrimaryNode became primary: the fencing token
	// writes are stamped with.
	PrimaryEpoch uint64 `json:"primary_epoch"`
	// Epoch is the epoch of the map.
	Epoch uint64 `json:"epoch"`
	// PendingNodes are nodes copying the partition in. They are not routed to yet.
	PendingNodes []string `json:"pending_nodes,omitempty"`
}

// Handoff is one copy in progress: Node copying Partition in from the nodes in From.
type Handoff struct {
	Partition string `json:"partition"`
	// Node is the ID of the node copying the partition in.
	Node string `json:"node"`
	// From are the partition's holders, which the node copies from.
	From []string `json:"from"`
	// Since is the epoch of the map that asked for the copy.
	Since   uint64    `json:"since_epoch"`
	Started time.Time `json:"started"`
	// Attempt counts the tries: above 1, an earlier one timed out.
	Attempt int `json:"attempt"`
	// Age is how long the copy had been running when the map was published, as a Go duration
	// ("1.5s").
	Age string `json:"age"`
	// Overdue is true once an attempt has timed out.
	Overdue bool `json:"overdue"`
}

// Cause says why a map was published.
type Cause struct {
	// Reason is one of "create", "crash", "leave", "drain", "join", "admin" (an operator's
	// action came into force or ended), "handoff", "timeout" and "rebalance".
	Reason string `json:"reason"`
	// Nodes are the nodes the reason is about (joined, left, crashed, draining, or named by
	// the operators' actions).
	Nodes []string `json:"nodes,omitempty"`
}

// HashConfig says how a key maps to a partition, so that clients in any language can follow:
// with Algorithm "md5", the index is the big-endian uint32 of the first four bytes of md5(key)
// modulo Modulo, and the ID is Format printed with the index.
type HashConfig struct {
	Algorithm string `json:"algorithm"`
	// Modulo is the partition count.
	Modulo int `json:"modulo"`
	// Format is the printf format of partition IDs: "partition-%d".
	Format string `json:"format"`
}

// JoinInfo is the body of GET /cluster/join: what a node started with JoinAddr needs.
type JoinInfo struct {
	ClusterName string `json:"cluster_name"`
	ClusterID   string `json:"cluster_id"`
	// EtcdEndpoints are the client URLs of the cluster's etcd, as the answering node uses them.
	EtcdEndpoints     []string `json:"etcd_endpoints"`
	PartitionCount    int      `json:"partition_count"`
	ReplicationFactor int      `json:"replication_factor"`
}

// CAInfo is the body of GET /cluster/ca in secure mode: the cluster's CA certificate and the
// answering node's proof that it knows the join token (an HMAC-SHA256 of CA under the token,
// hex). A joining node trusts CA only if Proof checks with its own token.
type CAInfo struct {
	CA    string `json:"ca"`
	Proof string `json:"proof"`
	// Hash is the CA's pin, "sha256:<hex of its public key>", for clients.
	Hash string `json:"hash"`
}

// JoinRequest is the body of POST /cluster/join in secure mode (with the join token as a
// bearer token): the joining node's ID and its certificate signing request (PEM).
type JoinRequest struct {
	NodeID string `json:"node_id"`
	CSR    string `json:"csr"`
}

// JoinAnswer answers a JoinRequest: the join info, the node's certificate signed by the
// cluster's CA (PEM), and the CA certificate.
type JoinAnswer struct {
	Info        JoinInfo `json:"info"`
	Certificate string   `json:"certificate"`
	CA          string   `json:"ca"`
}

// Health is the body of GET /health, with status 200 when the node holds a map and its lease is
// valid, 503 otherwise.
type Health struct {
	// Status is "ok", or why the node is not healthy.
	Status string `json:"status"`
	NodeID string `json:"node_id"`
	// Epoch is the epoch of the map the node holds, 0 before the first.
	Epoch  uint64 `json:"epoch"`
	Leader string `json:"leader"`
	// IsLeader is true when the answering node is the leader.
	IsLeader bool `json:"is_leader"`
	// Fenced is true while the node has not renewed its lease in time: it then claims no
	// primary role.
	Fenced bool `json:"fenced"`
	// LeaseValidFor is how long the node's lease stays valid if it is not renewed, as a Go
	// duration ("2.5s"); zero or negative once it has run out.
	LeaseValidFor string `json:"lease_valid_for"`
	// EtcdMember says, in a cluster on embedded etcd, whether the node runs an etcd member:
	// "member", "joining" (it is taking a member place a decommissioned node left) or "client";
	// absent on an external etcd and before the node holds a map.
	EtcdMember string `json:"etcd_member,omitempty"`
}

// Claims is the body of GET /cluster/claims: the partitions the node claims to lead right now.
type Claims struct {
	NodeID string `json:"node_id"`
	// Epoch is the epoch of the map the node holds.
	Epoch  uint64 `json:"epoch"`
	Fenced bool   `json:"fenced"`
	// Primaries maps each partition the node claims to lead to its primary epoch. It is empty
	// while the node is fenced. Never null.
	Primaries map[string]uint64 `json:"primaries"`
}

// Error is the body of every error status the API answers with.
type Error struct {
	Error string `json:"error"`
}

// History is the body of GET /cluster/history: the records of the maps published most recently,
// oldest first.
type History struct {
	Records []HistoryRecord `json:"records"`
	// Oldest is the epoch of the oldest record the cluster keeps, 0 when it keeps none.
	Oldest uint64 `json:"oldest"`
}

// HistoryRecord is what a published map changed, written by the leader in the transaction that
// publishes the map, under history/<epoch> in etcd.
type HistoryRecord struct {
	Epoch     uint64    `json:"epoch"`
	UpdatedAt time.Time `json:"updated_at"`
	Leader    string    `json:"leader"`
	Cause     Cause     `json:"cause"`
	// Nodes is the number of nodes in the map.
	Nodes int `json:"nodes"`
	// Changed is the number of partitions whose entry changed; PrimariesMoved those whose
	// primary changed.
	Changed        int `json:"changed"`
	PrimariesMoved int `json:"primaries_moved"`
	// CopiesStarted are the copies the map asks for (timed-out ones asked again included),
	// CopiesDone the copies of the map before that it completes, Pending the copies in flight
	// after it.
	CopiesStarted int `json:"copies_started"`
	CopiesDone    int `json:"copies_done"`
	Pending       int `json:"pending"`
	// ComputeMillis is how long the leader took to compute the map, in milliseconds; Bytes what
	// it wrote to etcd for it.
	ComputeMillis float64 `json:"compute_ms"`
	Bytes         int     `json:"bytes"`
	// Admin are the operators' actions that came into force or ended since the map before
	// (whatever the cause), at most MaxHistoryAdmin of them; AdminMore counts the others.
	Admin     []AdminChange `json:"admin,omitempty"`
	AdminMore int           `json:"admin_more,omitempty"`
}

// MaxHistoryAdmin is the most operators' actions one history record lists.
const MaxHistoryAdmin = 10

// AdminChange is an operator's action (a record under admin/) that came into force or ended
// between two maps, as the history lists it.
type AdminChange struct {
	// Action is the command that made the change: "cordon", "drain", "maintenance on",
	// "move", "weight", or for a record deleted "uncordon", "maintenance off", "move --clear",
	// "weight --clear".
	Action string `json:"action"`
	// Kind is the kind of the record ("cordon", "drain", "maintenance", "move", "weight");
	// Removed is true when the record was deleted, ending the action.
	Kind    string `json:"kind"`
	Removed bool   `json:"removed,omitempty"`
	// Node is the node the action is about (for a move, the node the partition is pinned to),
	// Partition the partition a move pins ("partition-5"), Weight a weight's.
	Node      string `json:"node,omitempty"`
	Partition string `json:"partition,omitempty"`
	Weight    int    `json:"weight,omitempty"`
	// Reason is the record's, cut to 200 bytes.
	Reason string `json:"reason,omitempty"`
	// By and At are who wrote the record (cut to 128 bytes) and when. For a removed record they
	// are still its writer's: etcd keeps no author of a deletion.
	By string    `json:"by,omitempty"`
	At time.Time `json:"at"`
}
