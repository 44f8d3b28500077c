package wiretest

import (
	"encoding/json"
	"strings"
	"testing"
)

// The documents decode into the declared fields, and a field that is not declared, at any
// depth, is refused.
func TestStrict(t *testing.T) {
	const body = `{"cluster":{"id":"c1","name":"default","epoch":7,"leader":"a","updated_at":"2025-01-02T03:04:05Z",` +
		`"cause":{"reason":"join","nodes":["b"]},"nodes":{"a":{"id":"a","ip":"127.0.0.1:1","zone":"z1"}},` +
		`"partition_map":{"partition-0":{"id":"partition-0","primary_node":"a","replica_nodes":[],"primary_epoch":3,"epoch":7}},` +
		`"handoffs":[]},"hash_config":{"algorithm":"md5","modulo":1,"format":"partition-%d"}}`
	var c Cluster
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	if c.Cluster.Epoch != 7 || c.Cluster.Nodes["a"].Zone != "z1" || c.Cluster.PartitionMap["partition-0"].PrimaryEpoch != 3 || c.HashConfig.Format != "partition-%d" {
		t.Fatalf("decoded %+v", c)
	}
	for _, bad := range []struct{ old, new string }{
		{`"leader"`, `"leader_id"`},
		{`"primary_node"`, `"primary"`},
		{`"zone"`, `"az"`},
		{`"modulo"`, `"partitions"`},
	} {
		var c Cluster
		if err := json.Unmarshal([]byte(strings.Replace(body, bad.old, bad.new, 1)), &c); err == nil {
			t.Errorf("%s renamed %s: decoded without an error", bad.old, bad.new)
		}
	}
	const delta = `{"id":"c1","name":"default","epoch":8,"since":7,"full":false,"leader":"a","updated_at":"2025-01-02T03:04:05Z",` +
		`"nodes":{"a":{"id":"a","ip":"127.0.0.1:1"}},"partition_count":4,"hash_config":{"algorithm":"md5","modulo":4,"format":"partition-%d"},` +
		`"partitions":[{"id":"partition-2","primary_node":"a","replica_nodes":[],"primary_epoch":8,"epoch":8}]}`
	var d MapDelta
	if err := json.Unmarshal([]byte(delta), &d); err != nil {
		t.Fatal(err)
	}
	if d.Since != 7 || d.PartitionCount != 4 || len(d.Partitions) != 1 || d.Partitions[0].PrimaryEpoch != 8 {
		t.Fatalf("decoded %+v", d)
	}
	if err := json.Unmarshal([]byte(strings.Replace(delta, `"since"`, `"base"`, 1)), &d); err == nil {
		t.Error("map delta with since renamed base: decoded without an error")
	}
	var h Health
	if err := json.Unmarshal([]byte(`{"status":"ok","uptime":"1s"}`), &h); err == nil {
		t.Error("health with an undeclared field: decoded without an error")
	}
}
