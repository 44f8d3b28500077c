package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// PutRequest is the body of POST /store/put (and of the examples' POST /kv/set).
type PutRequest struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ExportResponse is the body of GET /store/export.
type ExportResponse struct {
	Partition string  `json:"partition"`
	Node      string  `json:"node"`
	Entries   []Entry `json:"entries"`
}

// Handler serves the store's data API (see the package documentation), behind
// RequireToken(Options.Token).
func (s *Store) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /store/put", s.handlePut)
	mux.HandleFunc("GET /store/get", s.handleGet)
	mux.HandleFunc("POST /store/replicate", s.handleReplicate(s.Apply))
	mux.HandleFunc("POST /store/adopt", s.handleReplicate(s.Adopt))
	mux.HandleFunc("GET /store/export", s.handleExport)
	mux.HandleFunc("GET /store/stats", func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, http.StatusOK, s.Stats()) })
	return RequireToken(s.opts.Token, mux)
}

// ReadPut decodes a PutRequest body (see Decode), refusing a missing key and, with ErrTooLarge,
// a key or value over its limit.
func (s *Store) ReadPut(w http.ResponseWriter, r *http.Request) (PutRequest, error) {
	var req PutRequest
	if err := s.Decode(w, r, &req); err != nil {
		return req, err
	}
	if req.Key == "" {
		return req, fmt.Errorf("%w: the body needs a non-empty \"key\"", ErrBadRequest)
	}
	return req, checkSize(req.Key, req.Value, s.opts.MaxValueBytes)
}

// Decode decodes r's JSON body into v, refusing unknown fields (ErrBadRequest) and a body over
// the limit that the store's MaxValueBytes sets for every request (ErrTooLarge).
func (s *Store) Decode(w http.ResponseWriter, r *http.Request, v any) error {
	limit := bodyLimit(s.opts.MaxValueBytes)
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return fmt.Errorf("%w: request body over the limit of %d bytes (room for one value of the largest size, %d bytes, however JSON spells it)",
				ErrTooLarge, limit, s.opts.MaxValueBytes)
		}
		return fmt.Errorf("%w: body is not the expected JSON: %v", ErrBadRequest, err)
	}
	return nil
}

func (s *Store) handlePut(w http.ResponseWriter, r *http.Request) {
	req, err := s.ReadPut(w, r)
	if err != nil {
		WriteError(w, err)
		return
	}
	e, err := s.Put(r.Context(), req.Key, req.Value)
	if err != nil {
		WriteError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, e)
}

func (s *Store) handleGet(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	if key == "" {
		WriteError(w, fmt.Errorf("%w: the query needs a non-empty key", ErrBadRequest))
		return
	}
	if r.URL.Query().Get("local") == "1" {
		if e, ok := s.Local(key); ok {
			WriteJSON(w, http.StatusOK, e)
		} else {
			WriteError(w, ErrNotFound)
		}
		return
	}
	e, err := s.Get(key)
	if err != nil {
		WriteError(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, e)
}

// handleReplicate serves the endpoints that take a ReplicateRequest: /store/replicate (Apply)
// and /store/adopt (Adopt).
func (s *Store) handleReplicate(apply func(context.Context, ReplicateRequest) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req ReplicateRequest
		if err := s.Decode(w, r, &req); err != nil {
			WriteError(w, err)
			return
		}
		if err := apply(r.Context(), req); err != nil {
			WriteError(w, err)
			return
		}
		WriteJSON(w, http.StatusOK, map[string]int{"entries": len(req.Entries)})
	}
}

func (s *Store) handleExport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	id := q.Get("partition")
	minEpoch, err := strconv.ParseUint(q.Get("min_epoch"), 10, 64)
	if id == "" || err != nil {
		WriteError(w, fmt.Errorf("%w: the query needs partition and min_epoch (a number)", ErrBadRequest))
		return
	}
	// The node copying the partition in says where it listens before the export is taken: from
	// then on this node's writes to the partition also go there (see Put).
	if node, addr := q.Get("node"), q.Get("addr"); node != "" && addr != "" {
		s.learnAddr(node, addr)
	}
	entries, err := s.Export(r.Context(), id, minEpoch)
	if err != nil {
		WriteError(w, err)
		return
	}
	// Streamed, one entry at a time, as an ExportResponse: a partition may be larger than any
	// request body, and neither node holds its whole JSON in memory. A failure half-way leaves
	// the JSON unfinished, and the copying node asks again.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	partition, _ := json.Marshal(id)
	node, _ := json.Marshal(s.me)
	fmt.Fprintf(bw, `{"partition":%s,"node":%s,"entries":[`, partition, node)
	enc := json.NewEncoder(bw)
	for i, e := range entries {
		if i > 0 {
			bw.WriteByte(',')
		}
		if enc.Encode(e) != nil {
			return
		}
	}
	bw.WriteString("]}\n")
	bw.Flush()
}

// APIError is an error answer of a data API: its status, code and message, and for
// not_primary the primary the answering node knows of. errors.Is matches it against the
// package's sentinels by code.
type APIError struct {
	Status      int    `json:"-"`
	Code        string `json:"code"`
	Message     string `json:"error"`
	Primary     string `json:"primary,omitempty"`
	PrimaryAddr string `json:"primary_addr,omitempty"`
}

func (e *APIError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Is maps the answer's code to the sentinel it stands for.
func (e *APIError) Is(target error) bool {
	for _, c := range codes {
		if c.err == target {
			return c.code == e.Code
		}
	}
	return false
}

// codes maps errors to HTTP answers, most specific first.
var codes = []struct {
	err    error
	status int
	code   string
}{
	{ErrBadRequest, http.StatusBadRequest, "bad_request"},
	{ErrUnauthorized, http.StatusUnauthorized, "unauthorized"},
	{ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{ErrNotPrimary, http.StatusMisdirectedRequest, "not_primary"},
	{ErrNotHolder, http.StatusMisdirectedRequest, "not_holder"},
	{ErrStaleEpoch, http.StatusConflict, "stale_epoch"},
	{ErrNotFound, http.StatusNotFound, "not_found"},
	{ErrReplication, http.StatusServiceUnavailable, "replication_failed"},
	{ErrMapBehind, http.StatusServiceUnavailable, "map_behind"},
	{clusterkit.ErrNoPartitionMap, http.StatusServiceUnavailable, "no_map"},
}

// WriteError answers err with the status and code of the first sentinel it matches (500
// "internal" otherwise).
func WriteError(w http.ResponseWriter, err error) {
	body := APIError{Status: http.StatusInternalServerError, Code: "internal", Message: err.Error()}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			body.Status, body.Code = c.status, c.code
			break
		}
	}
	var np *NotPrimaryError
	if errors.As(err, &np) {
		body.Primary, body.PrimaryAddr = np.Primary, np.PrimaryAddr
	}
	WriteJSON(w, body.Status, body)
}

// WriteJSON answers v as JSON with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Call sends a request to the data API at addr (host:port) and decodes a 200 answer into out
// (when not nil). Another answer is returned as an *APIError; a transport failure as the
// client's error. Headers in hdr are added to the request; the cluster's token comes with
// httpc (TokenClient).
func Call(ctx context.Context, httpc *http.Client, method, addr, path string, hdr http.Header, in, out any) error {
	resp, err := do(ctx, httpc, method, addr, path, hdr, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, addr, err)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s%s: answer: %w", method, addr, path, err)
	}
	return nil
}

// do sends a request as Call does and returns a 200 answer, whose body the caller reads and
// closes. Another answer is returned as an *APIError.
func do(ctx context.Context, httpc *http.Client, method, addr, path string, hdr http.Header, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, addr, err)
	}
	e := &APIError{Status: resp.StatusCode}
	if json.Unmarshal(b, e) != nil || e.Code == "" {
		e.Code, e.Message = "http", string(bytes.TrimSpace(b))
	}
	return nil, e
}

func call(ctx context.Context, httpc *http.Client, method, addr, path string, in, out any) error {
	return Call(ctx, httpc, method, addr, path, nil, in, out)
}

// GetAt reads key from the data API at addr: from the primary, or the node's own copy when
// local is set.
func GetAt(ctx context.Context, httpc *http.Client, addr, key string, local bool) (Entry, error) {
	path := "/store/get?key=" + url.QueryEscape(key)
	if local {
		path += "&local=1"
	}
	var e Entry
	err := Call(ctx, httpc, http.MethodGet, addr, path, nil, nil, &e)
	return e, err
}

// StatsAt reads the stats of the data API at addr.
func StatsAt(ctx context.Context, httpc *http.Client, addr string) (Stats, error) {
	var st Stats
	err := Call(ctx, httpc, http.MethodGet, addr, "/store/stats", nil, nil, &st)
	return st, err
}
