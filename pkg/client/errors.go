package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/clusterkit-go/clusterkit/internal/topology"
)

var (
	// ErrUnavailable means a node could not be reached. Do moves to the next holder when an
	// operation fails with a connection error or with an error that wraps ErrUnavailable (for
	// example for an HTTP 503), and an *AttemptsError wraps it when every holder failed.
	ErrUnavailable = errors.New("clusterkit: node unavailable")
	// ErrInvalidConfig is wrapped by every validation error of New; the message names the field.
	ErrInvalidConfig = errors.New("clusterkit: invalid client config")
	// ErrUnsupportedHash is returned when the cluster publishes a key hash this client does not
	// implement: routing with another hash would send keys to the wrong nodes.
	ErrUnsupportedHash = topology.ErrUnsupportedHash
	// ErrClosed is returned by calls on a closed Client.
	ErrClosed = errors.New("clusterkit: client closed")
)

// Attempt is one node Do tried, and how the operation failed there.
type Attempt struct {
	Node Node
	Err  error
}

// AttemptsError is returned by Do when no holder of the key's partition completed the
// operation: every one of them was unavailable (Err is ErrUnavailable), or the context ended
// first (Err is the context's error). Attempts lists what was tried, in order. Match it with
// errors.As; errors.Is(err, ErrUnavailable) and IsUnavailable also hold in the first case.
type AttemptsError struct {
	Key   string
	Route Route
	// Attempts are the nodes tried, in order, with their errors.
	Attempts []Attempt
	Err      error
}

func (e *AttemptsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "clusterkit: key %q (%s, map epoch %d): ", e.Key, e.Route.Partition, e.Route.Epoch)
	if errors.Is(e.Err, ErrUnavailable) {
		fmt.Fprintf(&b, "all %d holders unavailable", len(e.Attempts))
	} else {
		fmt.Fprintf(&b, "%v after %d attempts", e.Err, len(e.Attempts))
	}
	for i, a := range e.Attempts {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%s%s at %s: %v", sep, a.Node.ID, a.Node.Addr, a.Err)
	}
	return b.String()
}

// Unwrap returns ErrUnavailable or the context's error.
func (e *AttemptsError) Unwrap() error { return e.Err }

// IsUnavailable reports whether err means that a node could not be reached, so that the
// operation may be tried on another holder: it wraps ErrUnavailable, or it is a connection
// failure (refused, reset, broken pipe, unreachable host, an EOF, or any failure to dial,
// a dial timeout included). A timeout after the connection was made is not one: the node may
// have carried the operation out. Context errors are not either.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return !errors.Is(err, context.Canceled)
	}
	for _, target := range []error{
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, io.EOF, io.ErrUnexpectedEOF,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}
