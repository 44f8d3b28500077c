package clusterkit

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrInvalidOptions is wrapped by every validation error of NewClusterKit; the message names
	// the field.
	ErrInvalidOptions = errors.New("clusterkit: invalid options")
	// ErrNoPartitionMap is returned by lookups before the node holds a partition map.
	ErrNoPartitionMap = errors.New("clusterkit: no partition map yet")
	// ErrNotStarted is returned by calls that need a started node.
	ErrNotStarted = errors.New("clusterkit: not started")
	// ErrStopped is returned by Start after Stop.
	ErrStopped = errors.New("clusterkit: stopped")
	// ErrUnknownPartition is returned for a partition ID that is not partition-<n> with n below
	// the partition count.
	ErrUnknownPartition = errors.New("clusterkit: unknown partition")
	// ErrEtcdAuthFailed is wrapped by the error of Start when etcd refuses the node's user name
	// and password (EtcdUsername, EtcdPassword), or requires authentication and none is set.
	ErrEtcdAuthFailed = errors.New("clusterkit: etcd authentication failed")
	// ErrEtcdPermissionDenied is wrapped by the error of Start when the node's etcd user may not
	// read and write every key under the cluster's prefix, /clusterkit/<ClusterName>/: its role
	// must grant readwrite on that prefix. The message names the prefix.
	ErrEtcdPermissionDenied = errors.New("clusterkit: etcd permission denied")
)

// NodeIDInUseError is returned by Start when another live process is registered under the same
// NodeID. Start never takes the record of a live node.
type NodeIDInUseError struct {
	NodeID string
	// Addr is the address the live holder of the ID registered.
	Addr string
	// LeaseLeft is how long its lease has left if it stopped renewing now.
	LeaseLeft time.Duration
}

func (e *NodeIDInUseError) Error() string {
	return fmt.Sprintf("clusterkit: node ID %q is in use by a live node at %s (its lease expires %v after it stops renewing)",
		e.NodeID, e.Addr, e.LeaseLeft)
}

// ConfigMismatchError is returned by Start when the node's settings differ from the ones the
// cluster was created with.
type ConfigMismatchError struct {
	// Setting is the Options field that differs.
	Setting string
	Local   any
	Cluster any
}

func (e *ConfigMismatchError) Error() string {
	return fmt.Sprintf("clusterkit: %s is %v here but the cluster was created with %v; start the node with %s=%v",
		e.Setting, e.Local, e.Cluster, e.Setting, e.Cluster)
}
