// Command kvstore is the original README's "Using the API" example: an in-memory key-value
// store that asks ClusterKit where each key goes. ClusterKit tells WHERE; this program decides
// HOW: it keeps data in a map and talks to the other nodes over a small HTTP API of its own.
//
// Run alone, it starts a one-node cluster (with an embedded etcd), writes two keys, reads one
// back and exits:
//
//	go run ./examples/quickstart/kvstore
//
// Several of them form a cluster; -serve keeps each running until SIGINT or SIGTERM, so that
// the others can forward to it:
//
//	go run ./examples/quickstart/kvstore -serve
//	go run ./examples/quickstart/kvstore -id node-2 -addr :8081 -kv-addr :9081 -join localhost:8080 -serve
//
// Each node serves its data on -kv-addr and publishes that address in its ClusterKit node
// metadata under "kv_addr", where the other nodes find it:
//
//	PUT /kv/{key}            store a value (the body), routed like Set
//	PUT /kv/{key}?replica=1  store a copy sent by the partition's primary
//	GET /kv/{key}            read a value, routed like Get
//
// With the cluster's join token ($JOIN_TOKEN, or -token, which wins) every request needs
// "Authorization: Bearer <token>" (401 otherwise), and the nodes send it to each other; without
// one the API is open, and a node listening beyond the loopback interface says so at start. A
// value is limited to -max-value-bytes (1 MiB; 413 beyond).
//
// The data lives in memory only, and partitions are not copied when they move (a real store
// would copy them in an OnPartitionChange hook): this is the routing half of a store.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clusterkit-go/clusterkit/examples/internal/store"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

const (
	// kvAddrKey is the node metadata key under which each node publishes its data API address.
	kvAddrKey = "kv_addr"
	// forwardedHeader marks a request that a node forwarded: the receiver serves it locally or
	// refuses it, but never forwards it again, so two nodes whose maps briefly differ cannot
	// bounce a request between them.
	forwardedHeader = "X-KV-Forwarded-By"
)

// errNotFound is returned by Get for a key that was never stored.
var errNotFound = errors.New("key not found")

// errNotHolder is returned when a forwarded request reaches a node that holds no copy of the
// key's partition.
var errNotHolder = errors.New("this node holds no copy of the key's partition")

// KVStore keeps, in memory, the keys of the partitions this node holds, and routes the others.
type KVStore struct {
	ck   *clusterkit.ClusterKit
	data map[string]string
	mu   sync.RWMutex

	// client sends the cluster's token, when there is one, on the calls to the other nodes.
	client *http.Client
	// token guards Handler; maxValue bounds a value, in bytes.
	token    string
	maxValue int
	// replication tracks the copies sent to replicas in the background, so that the program
	// waits for them before it exits.
	replication sync.WaitGroup
}

func (kv *KVStore) Set(key, value string) error {
	// 1. Get partition for this key
	partition, err := kv.ck.GetPartition(key)
	if err != nil {
		return err
	}

	// 2. Am I the primary for this partition?
	if kv.ck.IsPrimary(partition) {
		// YES - Store locally
		kv.mu.Lock()
		kv.data[key] = value
		kv.mu.Unlock()

		fmt.Printf("✅ Stored %s=%s (I'm primary of %s)\n", key, value, partition.ID)

		// Replicate to replicas, in the background as in the original example.
		replicas := kv.ck.GetReplicas(partition)
		for _, replica := range replicas {
			kv.replication.Go(func() {
				if err := kv.replicateToNode(replica, key, value); err != nil {
					log.Printf("replicate %s to %s: %v", key, replica.ID, err)
				}
			})
		}
		return nil
	}

	// 3. Am I a replica?
	if kv.ck.IsReplica(partition) {
		// YES - Just store it. (As in the original example, the write stays here; a real
		// store would also send it to the primary.)
		kv.mu.Lock()
		kv.data[key] = value
		kv.mu.Unlock()

		fmt.Printf("✅ Stored %s=%s (I'm replica of %s)\n", key, value, partition.ID)
		return nil
	}

	// 4. I'm neither - forward to primary
	primary := kv.ck.GetPrimary(partition)
	if primary == nil {
		return fmt.Errorf("%s has no primary", partition.ID)
	}
	fmt.Printf("➡️  Forwarding %s to primary: %s\n", key, primary.ID)
	return kv.forwardToPrimary(primary, key, value)
}

func (kv *KVStore) Get(key string) (string, error) {
	// 1. Get partition for this key
	partition, err := kv.ck.GetPartition(key)
	if err != nil {
		return "", err
	}

	// 2. Am I primary or replica for this partition?
	if kv.ck.IsPrimary(partition) || kv.ck.IsReplica(partition) {
		// YES - Read locally
		kv.mu.RLock()
		defer kv.mu.RUnlock()

		value, exists := kv.data[key]
		if !exists {
			return "", errNotFound
		}
		return value, nil
	}

	// 3. I don't own this partition - forward to primary
	primary := kv.ck.GetPrimary(partition)
	if primary == nil {
		return "", fmt.Errorf("%s has no primary", partition.ID)
	}
	return kv.readFromNode(primary, key)
}

// holds reports whether this node keeps a copy of key's partition.
func (kv *KVStore) holds(key string) bool {
	partition, err := kv.ck.GetPartition(key)
	return err == nil && (kv.ck.IsPrimary(partition) || kv.ck.IsReplica(partition))
}

// forwardToPrimary sends a write to the partition's primary, which stores and replicates it.
func (kv *KVStore) forwardToPrimary(primary *clusterkit.Node, key, value string) error {
	_, err := kv.call(http.MethodPut, primary, key, "", value)
	return err
}

// replicateToNode sends the primary's copy of a write to one replica.
func (kv *KVStore) replicateToNode(replica clusterkit.Node, key, value string) error {
	_, err := kv.call(http.MethodPut, &replica, key, "replica=1", value)
	return err
}

// readFromNode reads key from a node that holds its partition.
func (kv *KVStore) readFromNode(node *clusterkit.Node, key string) (string, error) {
	return kv.call(http.MethodGet, node, key, "", "")
}

// call sends one request to node's data API and returns the body of a 200 answer.
func (kv *KVStore) call(method string, node *clusterkit.Node, key, query, body string) (string, error) {
	addr := node.Metadata[kvAddrKey]
	if addr == "" {
		return "", fmt.Errorf("%s publishes no %q in its metadata", node.ID, kvAddrKey)
	}
	u := "http://" + addr + "/kv/" + url.PathEscape(key)
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set(forwardedHeader, kv.ck.GetMyNodeID())
	resp, err := kv.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", method, node.ID, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(kv.maxValue)))
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", method, node.ID, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return "", fmt.Errorf("%s %s: %w", method, node.ID, errNotFound)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: %s: %s", method, node.ID, resp.Status, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// Handler serves the node's data API (see the package comment), behind the token check.
func (kv *KVStore) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /kv/{key}", kv.handlePut)
	mux.HandleFunc("GET /kv/{key}", kv.handleGet)
	return store.RequireToken(kv.token, mux)
}

func (kv *KVStore) handlePut(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(kv.maxValue)))
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		store.WriteError(w, fmt.Errorf("%w: value over the limit of %d bytes (-max-value-bytes)", store.ErrTooLarge, kv.maxValue))
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	forwarded := r.Header.Get(forwardedHeader) != ""
	replica := r.URL.Query().Get("replica") == "1"
	switch {
	case (forwarded || replica) && !kv.holds(key):
		http.Error(w, errNotHolder.Error(), http.StatusMisdirectedRequest)
	case replica:
		kv.mu.Lock()
		kv.data[key] = string(b)
		kv.mu.Unlock()
		fmt.Printf("✅ Stored %s=%s (copy from %s)\n", key, b, r.Header.Get(forwardedHeader))
	default:
		if err := kv.Set(key, string(b)); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	}
}

func (kv *KVStore) handleGet(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if r.Header.Get(forwardedHeader) != "" && !kv.holds(key) {
		http.Error(w, errNotHolder.Error(), http.StatusMisdirectedRequest)
		return
	}
	value, err := kv.Get(key)
	if errors.Is(err, errNotFound) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	io.WriteString(w, value)
}

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	id := flag.String("id", "node-1", "node ID")
	addr := flag.String("addr", ":8080", "host:port of the node's ClusterKit HTTP API")
	join := flag.String("join", "", "HTTP address of a node of the cluster to join (default: start a new cluster)")
	kvAddr := flag.String("kv-addr", ":9080", "host:port of the node's key-value HTTP API")
	dataDir := flag.String("data-dir", "", "directory for the node's data (default <temp dir>/clusterkit/<id>)")
	replication := flag.Int("replication", 0, "copies of each partition, set when the cluster is created (default 3)")
	serve := flag.Bool("serve", false, "keep serving after the example's writes and read, until SIGINT or SIGTERM")
	tokenFlag := flag.String("token", "", "the cluster's join token: ClusterKit's secure mode (etcd and its HTTP API over TLS), and required from clients and nodes of the data API as \"Authorization: Bearer <token>\" (default $"+store.TokenEnv+", which keeps it out of the process list; none: plain http and an open data API)")
	maxValue := flag.Int("max-value-bytes", store.DefaultMaxValueBytes, "largest value accepted, in bytes")
	flag.Parse()
	token, err := store.ResolveToken(*tokenFlag)
	if err != nil {
		return err
	}
	if *maxValue <= 0 {
		return fmt.Errorf("-max-value-bytes %d: want a positive number", *maxValue)
	}

	// The data API listens first, so that its address can be published with the node.
	l, err := net.Listen("tcp", *kvAddr)
	if err != nil {
		return err
	}
	defer l.Close()
	if token == "" && !store.Loopback(l.Addr()) {
		log.Printf("INSECURE: no join token (%s or -token) while the data API listens on %s, beyond the loopback interface: "+
			"anyone who reaches it can write and read; set the same token on every node and client", store.TokenEnv, l.Addr())
	}

	ck, err := clusterkit.NewClusterKit(clusterkit.Options{
		NodeID:            *id,
		HTTPAddr:          *addr,
		JoinAddr:          *join,
		DataDir:           *dataDir,
		ReplicationFactor: *replication,
		JoinToken:         token, // with one, ClusterKit's secure mode: etcd and its HTTP API over TLS
		Metadata:          map[string]string{kvAddrKey: reachable(l.Addr())},
	})
	if err != nil {
		return err
	}

	kv := &KVStore{
		ck:       ck,
		data:     make(map[string]string),
		client:   store.TokenClient(&http.Client{Timeout: 5 * time.Second}, token),
		token:    token,
		maxValue: *maxValue,
	}
	srv := &http.Server{Handler: kv.Handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
		kv.replication.Wait()
		ck.Stop()
	}()

	if err := ck.Start(); err != nil {
		return err
	}
	log.Printf("%s started: ClusterKit API on %s, data API on %s", *id, ck.AdvertiseAddr(), reachable(l.Addr()))

	// Use the KV store
	if err := kv.Set("user:123", "John Doe"); err != nil {
		return err
	}
	if err := kv.Set("user:456", "Jane Smith"); err != nil {
		return err
	}

	value, err := kv.Get("user:123")
	if err != nil {
		return err
	}
	fmt.Println("Value:", value)

	if *serve {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		<-ctx.Done()
		log.Printf("stopping %s", *id)
	}
	return nil
}

// reachable is the address other local nodes reach a listener at: a listener on all
// interfaces is reached on 127.0.0.1. Nodes on different machines would publish a routable
// name instead.
func reachable(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
