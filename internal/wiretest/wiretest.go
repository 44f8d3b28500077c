// Package wiretest decodes the JSON documents of a ClusterKit node's HTTP API for the tests that
// check them on purpose. Its declarations are its own, independent of pkg/wire: a change to a
// document then fails those tests instead of passing silently through both the node and the
// reader. Decoding is strict: a field this package does not declare is an error, so a renamed
// or added field shows up here first. It also writes bodies of its own for tests that serve a
// map to a reader (ClusterBody, FullMapBody).
package wiretest

import (
	"bytes"
	"encoding/json"
	"time"
)

// Cluster is the body of GET /cluster.
type Cluster struct {
	Cluster    ClusterState `json:"cluster"`
	HashConfig HashConfig   `json:"hash_config"`
}

// ClusterState is the "cluster" object of GET /cluster.
type ClusterState struct {
	ID           string               `json:"id"`
	Name         string               `json:"name"`
	Epoch        uint64               `json:"epoch"`
	Leader       string               `json:"leader"`
	UpdatedAt    time.Time            `json:"updated_at"`
	Cause        Cause                `json:"cause"`
	Nodes        map[string]Node      `json:"nodes"`
	PartitionMap map[string]Partition `json:"partition_map"`
	// Handoffs are copies in progress; the map settles when there are none.
	Handoffs []Handoff `json:"handoffs"`
	// Queued counts the copies into each node that wait for a slot; absent when none does.
	Queued map[string]int `json:"queued"`
	// Maintenance are the operators' maintenances that stand; absent when none does.
	Maintenance []Maintenance `json:"maintenance"`
	// Down are crashed nodes whose places the map keeps; absent when there are none.
	Down map[string]DownNode `json:"down"`
}

// DownNode is one entry of "down".
type DownNode struct {
	Since time.Time `json:"since"`
	Zone  string    `json:"zone"`
}

// Maintenance is one entry of "maintenance".
type Maintenance struct {
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// ClusterNodes is the body of GET /cluster/nodes.
type ClusterNodes struct {
	ID          string              `json:"id"`
	Name        string              `json:"name"`
	Epoch       uint64              `json:"epoch"`
	Nodes       map[string]Node     `json:"nodes"`
	Maintenance []Maintenance       `json:"maintenance"`
	Down        map[string]DownNode `json:"down"`
}

// MapDelta is the body of GET /cluster/map.
type MapDelta struct {
	ID             string          `json:"id"`
	Name           string          `json:"name"`
	Epoch          uint64          `json:"epoch"`
	Since          uint64          `json:"since"`
	Full           bool            `json:"full"`
	Leader         string          `json:"leader"`
	UpdatedAt      time.Time       `json:"updated_at"`
	Nodes          map[string]Node `json:"nodes"`
	PartitionCount int             `json:"partition_count"`
	HashConfig     HashConfig      `json:"hash_config"`
	// Partitions are the partitions that changed since Since (all of them when Full).
	Partitions []Partition `json:"partitions"`
}

// Cause is why a map was published.
type Cause struct {
	Reason string   `json:"reason"`
	Nodes  []string `json:"nodes"`
}

// Node is one entry of "nodes".
type Node struct {
	ID       string            `json:"id"`
	IP       string            `json:"ip"`
	Zone     string            `json:"zone"`
	Metadata map[string]string `json:"metadata"`
	// Weight and State follow the operators' actions; GET /cluster/map leaves them out.
	Weight int    `json:"weight"`
	State  string `json:"state"`
}

// Partition is one entry of "partition_map".
type Partition struct {
	ID           string   `json:"id"`
	PrimaryNode  string   `json:"primary_node"`
	ReplicaNodes []string `json:"replica_nodes"`
	PrimaryEpoch uint64   `json:"primary_epoch"`
	Epoch        uint64   `json:"epoch"`
	PendingNodes []string `json:"pending_nodes"`
}

// Handoff is one entry of "handoffs".
type Handoff struct {
	Partition string    `json:"partition"`
	Node      string    `json:"node"`
	From      []string  `json:"from"`
	Since     uint64    `json:"since_epoch"`
	Started   time.Time `json:"started"`
	Attempt   int       `json:"attempt"`
	Age       string    `json:"age"`
	Overdue   bool      `json:"overdue"`
}

// HashConfig is "hash_config": how keys map to partitions.
type HashConfig struct {
	Algorithm string `json:"algorithm"`
	Modulo    int    `json:"modulo"`
	Format    string `json:"format"`
}

// Join is the body of GET /cluster/join.
type Join struct {
	ClusterName       string   `json:"cluster_name"`
	ClusterID         string   `json:"cluster_id"`
	EtcdEndpoints     []string `json:"etcd_endpoints"`
	PartitionCount    int      `json:"partition_count"`
	ReplicationFactor int      `json:"replication_factor"`
}

// Health is the body of GET /health.
type Health struct {
	Status        string `json:"status"`
	NodeID        string `json:"node_id"`
	Epoch         uint64 `json:"epoch"`
	Leader        string `json:"leader"`
	IsLeader      bool   `json:"is_leader"`
	Fenced        bool   `json:"fenced"`
	LeaseValidFor string `json:"lease_valid_for"`
	EtcdMember    string `json:"etcd_member,omitempty"`
}

// Claims is the body of GET /cluster/claims.
type Claims struct {
	NodeID    string            `json:"node_id"`
	Epoch     uint64            `json:"epoch"`
	Fenced    bool              `json:"fenced"`
	Primaries map[string]uint64 `json:"primaries"`
}

// UnmarshalJSON decodes GET /cluster strictly.
func (c *Cluster) UnmarshalJSON(b []byte) error {
	type plain Cluster
	return strict(b, (*plain)(c))
}

// UnmarshalJSON decodes GET /cluster/nodes strictly.
func (c *ClusterNodes) UnmarshalJSON(b []byte) error {
	type plain ClusterNodes
	return strict(b, (*plain)(c))
}

// UnmarshalJSON decodes GET /cluster/map strictly.
func (d *MapDelta) UnmarshalJSON(b []byte) error {
	type plain MapDelta
	return strict(b, (*plain)(d))
}

// UnmarshalJSON decodes GET /cluster/join strictly.
func (j *Join) UnmarshalJSON(b []byte) error {
	type plain Join
	return strict(b, (*plain)(j))
}

// UnmarshalJSON decodes GET /health strictly.
func (h *Health) UnmarshalJSON(b []byte) error {
	type plain Health
	return strict(b, (*plain)(h))
}

// UnmarshalJSON decodes GET /cluster/claims strictly.
func (c *Claims) UnmarshalJSON(b []byte) error {
	type plain Claims
	return strict(b, (*plain)(c))
}

// strict decodes b into v, refusing fields v does not declare, at any depth.
func strict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}
