package store

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/clusterkit-go/clusterkit/internal/pki"
)

// TokenEnv is the environment variable the examples' programs read the cluster's join token
// from when -token is not given: the variable the ClusterKit node binary reads for its secure
// mode, so that one secret serves both.
const TokenEnv = "JOIN_TOKEN"

// ResolveToken returns the token a program runs with: flag (its -token) when not empty, else
// $JOIN_TOKEN, else none. A token must be a valid ClusterKit join token (16 to 256 letters,
// digits or . _ ~ + / = -: clusterkit-node -new-token prints one), so that one secret serves
// the node binary and the examples, and a guessable one is refused.
func ResolveToken(flag string) (string, error) {
	token, from := flag, "-token"
	if token == "" {
		token, from = os.Getenv(TokenEnv), "$"+TokenEnv
	}
	if token == "" {
		return "", nil
	}
	if err := pki.CheckToken(token); err != nil {
		return "", fmt.Errorf("%s: %w", from, err)
	}
	return token, nil
}

// RequireToken returns h behind a check of "Authorization: Bearer <token>": a request without
// it, or with another token, is answered 401 unauthorized before h runs, so before its body is
// read. With an empty token it returns h unchanged: the API is open, as without a cluster
// secret.
//
// Every endpoint is behind it, reads included: the data are the cluster's, an export (a read)
// also tells the exporting node where to send its next writes, and one rule for the whole API
// leaves no endpoint to forget.
func RequireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	// Comparing digests of equal length keeps the comparison's time independent of how much of
	// the token, and of its length, a guess got right.
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		var problem string
		switch got, ok := bearer(auth); {
		case auth == "":
			problem = "no Authorization header: send \"Authorization: Bearer\" and the cluster's join token"
		case !ok:
			problem = "the Authorization header is not a Bearer token"
		default:
			if sum := sha256.Sum256([]byte(got)); subtle.ConstantTimeCompare(sum[:], want[:]) == 1 {
				h.ServeHTTP(w, r)
				return
			}
			problem = "wrong token in the Authorization header"
		}
		w.Header().Set("WWW-Authenticate", "Bearer")
		WriteError(w, fmt.Errorf("%w: %s", ErrUnauthorized, problem))
	})
}

// bearer returns the token of an "Authorization: Bearer <token>" header value (the scheme is
// case-insensitive).
func bearer(auth string) (string, bool) {
	const scheme = "bearer "
	if len(auth) <= len(scheme) || !strings.EqualFold(auth[:len(scheme)], scheme) {
		return "", false
	}
	return strings.TrimSpace(auth[len(scheme):]), true
}

// TokenClient returns a client like c that sends "Authorization: Bearer <token>" with every
// request, or c itself when token is empty. It follows no redirect (a 3xx is returned as the
// answer): the token goes only to the addresses its caller chose. Safe for concurrent use, as
// c is.
func TokenClient(c *http.Client, token string) *http.Client {
	if token == "" {
		return c
	}
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	return &http.Client{
		Transport:     &tokenTransport{header: "Bearer " + token, next: next},
		Jar:           c.Jar,
		Timeout:       c.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// tokenTransport adds the Authorization header to each request before next sends it.
type tokenTransport struct {
	header string
	next   http.RoundTripper
}

func (t *tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	// A RoundTripper must not change the caller's request.
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", t.header)
	return t.next.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the wrapped transport.
func (t *tokenTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// Loopback reports whether a listener's address is reachable from this machine only. An
// unspecified address (":9080", "0.0.0.0:9080") listens on every interface: a program
// listening there without a token should say so loudly.
func Loopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
