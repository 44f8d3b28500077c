package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The data API refuses a request without the token (401) and a value over -max-value-bytes
// (413), each with a JSON error, before it looks at the key: the store is not needed for that.
func TestTokenAndValueLimit(t *testing.T) {
	const token = "kvstore-token-0123456789"
	kv := &KVStore{token: token, maxValue: 10}
	srv := httptest.NewServer(kv.Handler())
	defer srv.Close()
	tests := []struct {
		name, auth, body string
		status           int
		code, want       string
	}{
		{"no token", "", "v", http.StatusUnauthorized, "unauthorized", "no Authorization header"},
		{"wrong token", "Bearer another-token-0123456789", "v", http.StatusUnauthorized, "unauthorized", "wrong token"},
		{"value over the limit", "Bearer " + token, strings.Repeat("v", 11), http.StatusRequestEntityTooLarge, "too_large", "limit of 10 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPut, srv.URL+"/kv/k", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct{ Code, Error string }
			err = json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != tt.status || err != nil || e.Code != tt.code || !strings.Contains(e.Error, tt.want) {
				t.Errorf("answered %s %+v (%v), want %d %s mentioning %q", resp.Status, e, err, tt.status, tt.code, tt.want)
			}
		})
	}
}
