package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// Four node processes started one after another on the embedded default form one cluster whose
// maps never wait for a copy: the nodes run no copy hook, so every map after the first takes a
// node in (or names an etcd member) and none completes a handoff. Three nodes end up etcd
// members, joined in the background, and the fourth a client. (The times are the harness's
// to report: go run ./test/formation.)
func TestFormationPublishesNoHandoffMaps(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := build(ctx, "../..", filepath.Join(dir, "node"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := oneByOneThen(ctx, bin, dir, 4, 16, func(ps []*proc) error {
		var h struct {
			Records []struct {
				Epoch uint64 `json:"epoch"`
				Cause struct {
					Reason string `json:"reason"`
				} `json:"cause"`
			} `json:"records"`
		}
		if err := getJSON(ctx, ps[0].addr, "/cluster/history", &h); err != nil {
			return err
		}
		if len(h.Records) == 0 {
			return fmt.Errorf("no history")
		}
		for _, r := range h.Records {
			if r.Cause.Reason == "handoff" || r.Cause.Reason == "timeout" {
				return fmt.Errorf("epoch %d was published to complete or retry copies (%s): %+v", r.Epoch, r.Cause.Reason, h.Records)
			}
		}
		// The member joins go on after Start: wait for three members and one client.
		deadline := time.Now().Add(time.Minute)
		for {
			states := map[string]int{}
			for _, p := range ps {
				var hl struct {
					EtcdMember string `json:"etcd_member"`
				}
				if err := getJSON(ctx, p.addr, "/health", &hl); err != nil {
					return err
				}
				states[hl.EtcdMember]++
			}
			if states["member"] == 3 && states["client"] == 1 {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("etcd member states after a minute: %v", states)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("settled at epoch %d, %v after the first start; Starts %v", res.epoch, res.settled.Round(time.Millisecond), res.starts)
}

func getJSON(ctx context.Context, addr, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s%s: %s", addr, path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
