// Package wire declares the JSON documents of a ClusterKit node's HTTP API, for Go programs that
// read them. The node writes its answers with these types and pkg/client reads GET /cluster and
// GET /cluster/map with them.
//
//	GET /cluster         Cluster: the nodes, the partition map and its epoch, handoffs in
//	                     progress, and how keys map to partitions (HashConfig)
//	GET /cluster/map     MapDelta: the partitions that changed since a given epoch (or all),
//	                     with the nodes; what pkg/client follows the map with
//	GET /cluster/nodes   ClusterNodes: the nodes with their weight and state, and the
//	                     maintenances that stand, without the partition map
//	GET /cluster/join    JoinInfo: what a node started with JoinAddr needs
//	GET /cluster/claims  Claims: the partitions the node claims to lead, with their primary epochs
//	GET /health          Health
//	any error status     Error
//
// Quick start:
//
//	resp, err := http.Get("http://10.0.0.1:8080/cluster")
//	if err != nil { ... }
//	defer resp.Body.Close()
//	var c wire.Cluster
//	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil { ... }
//	p := c.Cluster.PartitionMap["partition-48"]
//	fmt.Println(p.PrimaryNode, p.ReplicaNodes, c.Cluster.Nodes[p.PrimaryNode].IP)
//
// Guarantees: the JSON of these types is the API's contract. Field names, their order and which
// fields are omitted when empty do not change; new fields may be added. The package only
// declares types: it does no I/O and has no dependencies beyond the standard library.
package wire
