package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// statusDoc is the document of clusterkit status.
type statusDoc struct {
	Cluster           string `json:"cluster"`
	ClusterID         string `json:"cluster_id"`
	Prefix            string `json:"prefix"`
	PartitionCount    int    `json:"partition_count"`
	ReplicationFactor int    `json:"replication_factor"`
	// Revision is the etcd revision everything was read at.
	Revision int64 `json:"revision"`
	// Map is null when no map has been published yet.
	Map *mapHead `json:"map"`
	// Leader leads the election now; "" when no node does.
	Leader string `json:"leader"`
	// Nodes counts the nodes of the map, NodesWithLease the node records (live leases).
	Nodes          int `json:"nodes"`
	NodesWithLease int `json:"nodes_with_lease"`
	// PendingCopies are the copies in flight; QueuedCopies those the map holds back for a free
	// slot (MaxHandoffsPerNode or MaxHandoffs), to be asked for as copies in flight finish.
	PendingCopies int `json:"pending_copies"`
	QueuedCopies  int `json:"queued_copies"`
	// LeaseGone are nodes of the map without a record: their lease ended and the leader has
	// not published a map without them yet. Absent are crashed nodes whose places the map keeps
	// during their grace period.
	LeaseGone []string `json:"lease_gone"`
	Absent    []string `json:"absent"`
	// Admin are the operators' actions in force (clusterkit drain, cordon, maintenance, move,
	// weight), in key order.
	Admin     []adminRecord    `json:"admin"`
	Endpoints []endpointStatus `json:"endpoints"`
}

// mapHead describes a published map.
type mapHead struct {
	Epoch     uint64      `json:"epoch"`
	Leader    string      `json:"leader"` // the leader that wrote it
	UpdatedAt time.Time   `json:"updated_at"`
	Cause     state.Cause `json:"cause"`
}

// endpointStatus is what one etcd endpoint says of itself.
type endpointStatus struct {
	Endpoint string `json:"endpoint"`
	Healthy  bool   `json:"healthy"`
	// Error says why the endpoint is not healthy: it did not answer, or reports errors (an
	// alarm).
	Error       string `json:"error,omitempty"`
	MemberID    string `json:"member_id,omitempty"`
	Version     string `json:"version,omitempty"`
	DBSize      int64  `json:"db_size"`
	DBSizeInUse int64  `json:"db_size_in_use"`
	IsLeader    bool   `json:"is_leader"`
	RaftTerm    uint64 `json:"raft_term"`
}

func newStatus(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the cluster at a glance, and the health of the etcd endpoints",
		Long: `Show the cluster's settings, its current map (epoch, leader, when and why it was
published), its nodes, the copies in progress and those queued (held back by the
leader's MaxHandoffsPerNode or MaxHandoffs until a copy in flight finishes), the nodes
whose lease is gone but that the map still lists, the operators' actions in force
(drained and cordoned nodes, maintenance reasons, pinned partitions, weights), and what
each etcd endpoint reports (etcd's Status call).

Exits with status 1 when the cluster has no partition map yet.

With -o json:
  {"cluster": "default", "cluster_id": "1fc12be1a648206a", "prefix": "/clusterkit/default/",
   "partition_count": 64, "replication_factor": 3, "revision": 42,
   "map": {"epoch": 5, "leader": "node-1", "updated_at": "2026-...Z",
           "cause": {"reason": "join", "nodes": ["node-3"]}},      (null without a map)
   "leader": "node-1", "nodes": 3, "nodes_with_lease": 3, "pending_copies": 0, "queued_copies": 0,
   "lease_gone": [], "absent": [],
   "admin": [{"key": "/clusterkit/default/admin/drain/node-3", "revision": 40, "kind": "drain",
              "node": "node-3", "reason": "disk swap", "by": "ops@host-1", "at": "2026-...Z"}],
   "endpoints": [{"endpoint": "http://127.0.0.1:18080", "healthy": true, "member_id": "8e9e05c52164694d",
                  "version": "3.7.3", "db_size": 131072, "db_size_in_use": 98304,
                  "is_leader": true, "raft_term": 2}]}`,
		Args: args(0, "no argument"),
		RunE: action(func(cmd *cobra.Command, _ []string) error {
			return g.command(cmd.Context(), func(ctx context.Context, s *session) error {
				snap, err := s.snapshot(ctx)
				if err != nil {
					return err
				}
				snap.warnSkipped(cmd.ErrOrStderr())
				doc := statusDocument(s, snap)
				doc.Endpoints = s.endpointStatus(ctx)
				if err := render(cmd, g, doc, snap.statusTable); err != nil {
					return err
				}
				if _, err := snap.requireMap(); err != nil {
					return err
				}
				return nil
			})
		}),
	}
}

func statusDocument(s *session, snap *snapshot) statusDoc {
	doc := statusDoc{
		Cluster:           snap.name,
		ClusterID:         snap.config.ClusterID,
		Prefix:            s.schema.Prefix(),
		PartitionCount:    snap.config.PartitionCount,
		ReplicationFactor: snap.config.ReplicationFactor,
		Revision:          snap.revision,
		Leader:            snap.leader,
		NodesWithLease:    len(snap.records),
		LeaseGone:         snap.leaseGone(),
		Absent:            snap.absent(),
		Admin:             append([]adminRecord{}, snap.admin...),
	}
	if m := snap.m; m != nil {
		doc.Map = &mapHead{Epoch: m.Epoch, Leader: m.Leader, UpdatedAt: m.UpdatedAt, Cause: m.Cause}
		doc.Nodes = len(m.Members())
		doc.PendingCopies = nextmap.Pending(m)
		for _, q := range nextmap.Queued(m) {
			doc.QueuedCopies += q
		}
	}
	return doc
}

// endpointStatus asks every endpoint for its status at once, each within the command's
// context.
func (s *session) endpointStatus(ctx context.Context) []endpointStatus {
	out := make([]endpointStatus, len(s.g.endpoints))
	var wg sync.WaitGroup
	for i, ep := range s.g.endpoints {
		wg.Go(func() {
			st := endpointStatus{Endpoint: ep}
			resp, err := s.cli.Status(ctx, ep)
			switch {
			case err != nil:
				st.Error = unwrapDeadline(err).Error()
			default:
				st.Healthy = len(resp.Errors) == 0
				if !st.Healthy {
					st.Error = fmt.Sprint(resp.Errors)
				}
				st.MemberID = strconv.FormatUint(resp.Header.MemberId, 16)
				st.Version = resp.Version
				st.DBSize, st.DBSizeInUse = resp.DbSize, resp.DbSizeInUse
				st.IsLeader = resp.Leader == resp.Header.MemberId
				st.RaftTerm = resp.RaftTerm
			}
			out[i] = st
		})
	}
	wg.Wait()
	return out
}

func (snap *snapshot) statusTable(w io.Writer, doc statusDoc) {
	fmt.Fprintf(w, "Cluster:\t%s (id %s, keys under %s)\n", doc.Cluster, doc.ClusterID, doc.Prefix)
	fmt.Fprintf(w, "Partitions:\t%d, replication factor %d\n", doc.PartitionCount, doc.ReplicationFactor)
	if doc.Map == nil {
		fmt.Fprintf(w, "Map:\tnone yet\n")
	} else {
		fmt.Fprintf(w, "Map:\tepoch %d, written by %s at %s (%s), cause %s\n", doc.Map.Epoch, doc.Map.Leader,
			doc.Map.UpdatedAt.Format(time.RFC3339Nano), ago(snap.now, doc.Map.UpdatedAt), cause(doc.Map.Cause))
	}
	fmt.Fprintf(w, "Leader:\t%s\n", orDash(doc.Leader))
	fmt.Fprintf(w, "Nodes:\t%d in the map, %d with a lease\n", doc.Nodes, doc.NodesWithLease)
	fmt.Fprintf(w, "Pending copies:\t%d, %d queued\n", doc.PendingCopies, doc.QueuedCopies)
	fmt.Fprintf(w, "Lease gone, still in map:\t%s\n", list(doc.LeaseGone))
	fmt.Fprintf(w, "Absent (grace period):\t%s\n", list(doc.Absent))
	fmt.Fprintf(w, "Operator actions:\t%s\n", adminSummary(doc.Admin))
	fmt.Fprintf(w, "\nENDPOINT\tHEALTH\tMEMBER\tVERSION\tDB SIZE\tIN USE\tLEADER\tRAFT TERM\n")
	for _, ep := range doc.Endpoints {
		if !ep.Healthy && ep.MemberID == "" {
			fmt.Fprintf(w, "%s\tunhealthy: %s\t-\t-\t-\t-\t-\t-\n", ep.Endpoint, ep.Error)
			continue
		}
		health := "ok"
		if !ep.Healthy {
			health = "unhealthy: " + ep.Error
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%t\t%d\n", ep.Endpoint, health, ep.MemberID, ep.Version,
			size(ep.DBSize), size(ep.DBSizeInUse), ep.IsLeader, ep.RaftTerm)
	}
}
